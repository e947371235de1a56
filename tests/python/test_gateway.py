"""The gateway against the real clients (openai, huggingface_hub).

tests/gateway_clients.rs starts `hfbreaker simulate` (TGI `primary` and
`fallback`, TEI `emb`, hf-inference feature extraction `hfemb`) and the
daemon with the gateway (routes `assistant`: [primary, fallback],
`embeddings`: [emb], `hf-embeddings`: [hfemb], `cached`: [cprimary] with a
cache), then runs this file with:
GATEWAY_URL (the gateway's base URL), GATEWAY_KEY (a client key), SIM_URL
(the simulator, to switch modes) and DAEMON_URL (the daemon, for /metrics).

tests/fidelity.rs runs pytest on this folder without those: the module is
skipped there (it only runs under its own harness).
"""

import base64
import json
import os
import re
import struct
import threading
import time

import pytest
import requests

if "GATEWAY_URL" not in os.environ:
    pytest.skip("runs under tests/gateway_clients.rs (GATEWAY_URL unset)", allow_module_level=True)

import openai  # noqa: E402
from huggingface_hub import InferenceClient  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402
from openai import OpenAI  # noqa: E402

GATEWAY = os.environ["GATEWAY_URL"].rstrip("/")
KEY = os.environ["GATEWAY_KEY"]
SIM = os.environ["SIM_URL"].rstrip("/")
DAEMON = os.environ["DAEMON_URL"].rstrip("/")
MESSAGES = [{"role": "user", "content": "Say hello"}]


def oai(**kw):
    return OpenAI(base_url=f"{GATEWAY}/v1", api_key=kw.pop("api_key", KEY), timeout=10, **kw)


def set_mode(name, mode):
    """PUT a simulator mode on endpoint `name`; None = back to the timeline."""
    url = f"{SIM}/_sim/endpoints/{name}/mode"
    r = requests.delete(url, timeout=5) if mode is None else requests.put(url, json=mode, timeout=5)
    assert r.status_code < 300, r.text


def circuit_states():
    """{endpoint: state} from the daemon's /metrics (the one-hot gauge)."""
    r = requests.get(f"{DAEMON}/metrics", timeout=5)
    assert r.status_code == 200 and "hfbreaker_circuit_state" in r.text, r.text[:300]
    text = r.text
    states = {}
    for line in text.splitlines():
        if not line.startswith("hfbreaker_circuit_state{") or not line.endswith(" 1"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        states[labels["endpoint"]] = labels["state"]
    return states


# --- openai -----------------------------------------------------------------


def test_openai_chat():
    raw = oai().chat.completions.with_raw_response.create(model="assistant", messages=MESSAGES, max_tokens=5)
    assert raw.headers["x-hfbreaker-route"] == "assistant"
    assert raw.headers["x-hfbreaker-endpoint"] == "primary"
    assert raw.headers["x-hfbreaker-tier"] == "primary"
    c = raw.parse()
    assert c.object == "chat.completion"
    assert isinstance(c.choices[0].message.content, str) and c.choices[0].message.content
    assert c.choices[0].finish_reason in ("length", "stop")


def test_openai_streaming_chat():
    stream = oai().chat.completions.create(model="assistant", messages=MESSAGES, max_tokens=5, stream=True)
    parts, chunks = [], 0
    for chunk in stream:
        chunks += 1
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    assert chunks >= 2
    assert "".join(parts).strip()


def sent_json(raw):
    return json.loads(raw.http_response.request.content)


def test_openai_embeddings_tei():
    """TEI: the request goes through as sent, base64 as the client asks by
    default (TEI answers little-endian float32 in base64, as OpenAI does)."""
    client = oai()
    raw = client.embeddings.with_raw_response.create(model="embeddings", input=["a", "bc"])
    assert raw.headers["x-hfbreaker-endpoint"] == "emb"
    assert sent_json(raw)["encoding_format"] == "base64"
    wire = raw.http_response.json()
    assert all(isinstance(d["embedding"], str) for d in wire["data"]), wire
    e = raw.parse()
    assert [d.index for d in e.data] == [0, 1]
    floats = client.embeddings.create(model="embeddings", input=["a", "bc"], encoding_format="float")
    for d, f in zip(e.data, floats.data):
        assert len(d.embedding) == 8 and all(isinstance(x, float) for x in d.embedding)
        assert d.embedding == pytest.approx(f.embedding, rel=1e-6)


def test_openai_embeddings_hf_inference_default_base64_decodes_to_floats():
    """hf-inference: feature extraction translated, in the format asked,
    one vector per input."""
    client = oai()
    raw = client.embeddings.with_raw_response.create(model="hf-embeddings", input=["a", "bc"])
    assert raw.headers["x-hfbreaker-endpoint"] == "hfemb"
    assert sent_json(raw)["encoding_format"] == "base64"
    # The wire carries base64 strings (little-endian float32)...
    wire = raw.http_response.json()
    assert len(wire["data"]) == 2
    decoded = []
    for d in wire["data"]:
        packed = base64.b64decode(d["embedding"])
        assert len(packed) == 4 * 8
        decoded.append(list(struct.unpack("<8f", packed)))
    # ...which the client decodes to floats.
    e = raw.parse()
    assert [d.index for d in e.data] == [0, 1]
    for d, want in zip(e.data, decoded):
        assert all(isinstance(x, float) for x in d.embedding)
        assert d.embedding == pytest.approx(want)
    floats = client.embeddings.create(model="hf-embeddings", input=["a", "bc"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [pytest.approx(w, rel=1e-6) for w in decoded]
    # The same vectors as TEI's for the same inputs (the simulator's model).
    tei = client.embeddings.create(model="embeddings", input=["a", "bc"], encoding_format="float")
    assert [d.embedding for d in tei.data] == [pytest.approx(w, rel=1e-6) for w in decoded]


def test_openai_models_list_names_the_routes():
    ids = [m.id for m in oai().models.list()]
    assert ids == ["assistant", "embeddings", "hf-embeddings", "cached"]


def test_openai_wrong_key_is_authentication_error():
    with pytest.raises(openai.AuthenticationError) as e:
        oai(api_key="sk-not-a-key", max_retries=0).chat.completions.create(model="assistant", messages=MESSAGES)
    assert e.value.status_code == 401


def test_openai_unknown_route_is_not_found():
    with pytest.raises(openai.NotFoundError) as e:
        oai(max_retries=0).chat.completions.create(model="no-such-route", messages=MESSAGES)
    assert e.value.status_code == 404
    assert "no-such-route" in str(e.value)


def metric(name, **labels):
    """The value of one series on the daemon's /metrics (0 when absent)."""
    text = requests.get(f"{DAEMON}/metrics", timeout=5).text
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_openai_cache_answers_when_the_whole_route_is_down():
    """Route `cached` ([cprimary], with a cache): an answer once, then the
    route down: the same request from the cache, another one a 503 with
    Retry-After, both through the real openai client."""
    client = oai(max_retries=0)
    asked = [{"role": "user", "content": "Remember this answer"}]
    try:
        raw = client.chat.completions.with_raw_response.create(model="cached", messages=asked, max_tokens=5)
        assert raw.headers["x-hfbreaker-tier"] == "primary"
        fresh = raw.parse()
        set_mode("cprimary", {"status": 503})
        raw = client.chat.completions.with_raw_response.create(model="cached", messages=asked, max_tokens=5)
        assert raw.headers["x-hfbreaker-tier"] == "cache"
        assert raw.headers["x-hfbreaker-route"] == "cached"
        assert raw.headers["x-hfbreaker-endpoint"] == "cprimary"
        assert int(raw.headers["age"]) <= 60
        cached = raw.parse()
        assert cached.id == fresh.id
        assert cached.choices[0].message.content == fresh.choices[0].message.content
        other = [{"role": "user", "content": "Never asked before"}]
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model="cached", messages=other, max_tokens=5)
        err = e.value
        assert err.status_code == 503
        assert int(err.response.headers["retry-after"]) >= 1
        assert err.response.headers["x-hfbreaker-tier"] == "exhausted"
        assert err.body["code"] == "route_exhausted", err.body
        assert "cprimary" in err.message
    finally:
        set_mode("cprimary", None)
    assert metric("hfbreaker_gateway_cache_hits_total", route="cached") == 1
    assert (
        metric("hfbreaker_gateway_requests_total", route="cached", endpoint="none", tier="exhausted", code="503")
        == 1
    )


# --- huggingface_hub --------------------------------------------------------


def hub():
    return InferenceClient(base_url=GATEWAY, api_key=KEY, timeout=10)


def test_hub_chat_completion():
    out = hub().chat_completion(MESSAGES, model="assistant", max_tokens=5)
    assert out.choices[0].message.content


def test_hub_chat_completion_stream():
    parts = []
    for chunk in hub().chat_completion(MESSAGES, model="assistant", max_tokens=5, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    assert "".join(parts).strip()


def hub_route(route, **kw):
    """InferenceClient pointed at a route: `feature_extraction` POSTs
    `{"inputs": ...}` to the base URL itself, with no `model`."""
    return InferenceClient(base_url=f"{GATEWAY}/routes/{route}", api_key=kw.pop("api_key", KEY), timeout=10, **kw)


def test_hub_feature_extraction_through_the_gateway():
    import numpy as np

    want = oai().embeddings.create(model="embeddings", input=["a", "bc"], encoding_format="float")
    want = [d.embedding for d in want.data]
    for route in ("embeddings", "hf-embeddings"):  # TEI's /embed, hf-inference's task API
        one = hub_route(route).feature_extraction("a")
        assert isinstance(one, np.ndarray) and one.dtype == np.float32
        assert one.shape == (8,), (route, one.shape)  # one string: one vector
        assert abs(float(np.linalg.norm(one)) - 1.0) < 1e-5
        assert one.tolist() == pytest.approx(want[0], rel=1e-6)
        many = hub_route(route).feature_extraction(["a", "bc"])
        assert many.shape == (2, 8), (route, many.shape)
        assert many.tolist() == [pytest.approx(w, rel=1e-6) for w in want]


def test_hub_feature_extraction_sends_what_the_gateway_reads():
    """What huggingface_hub sends: POST to the base URL, `inputs` and the
    parameters at the root, no `model` (the route comes from the path)."""
    sent = {}

    def hook(r, *args, **kwargs):
        sent["url"], sent["body"] = r.request.url, json.loads(r.request.body)

    from huggingface_hub.utils import get_session

    client = hub_route("embeddings")
    session = get_session()
    session.hooks["response"].append(hook)
    try:
        client.feature_extraction("a", normalize=True)
    finally:
        session.hooks["response"].remove(hook)
    assert sent["url"] == f"{GATEWAY}/routes/embeddings"
    assert sent["body"] == {"inputs": "a", "normalize": True}


def test_hub_feature_extraction_unknown_route_is_openai_404():
    with pytest.raises(HfHubHTTPError) as e:
        hub_route("no-such-route").feature_extraction("a")
    r = e.value.response
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "model_not_found"
    assert "no-such-route" in r.json()["error"]["message"]


def test_hub_feature_extraction_wrong_key_raises_401():
    with pytest.raises(HfHubHTTPError) as e:
        hub_route("embeddings", api_key="sk-not-a-key").feature_extraction("a")
    assert e.value.response.status_code == 401


def test_feature_extraction_at_the_root_reads_model():
    r = requests.post(
        GATEWAY,
        json={"model": "hf-embeddings", "inputs": ["a"]},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-hfbreaker-endpoint"] == "hfemb"
    assert len(r.json()) == 1 and len(r.json()[0]) == 8


def test_hub_wrong_key_raises_401():
    with pytest.raises(HfHubHTTPError) as e:
        InferenceClient(base_url=GATEWAY, api_key="sk-not-a-key").chat_completion(MESSAGES, model="assistant")
    assert e.value.response.status_code == 401


# --- failover under load ------------------------------------------------------


class Load:
    """Steady non-streaming chat from `threads` threads, each every `period`
    seconds, through an openai client with no retries of its own: every
    gateway error reaches this record."""

    def __init__(self, threads=4, period=0.2):
        self.client = oai(max_retries=0)
        self.period = period
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (start, end, endpoint or None, error or None)
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model="assistant", messages=MESSAGES, max_tokens=3
                )
                raw.parse()
                rec = (t0, time.monotonic(), raw.headers.get("x-hfbreaker-endpoint"), None)
            except Exception as e:  # noqa: BLE001 - every error is a finding
                rec = (t0, time.monotonic(), None, repr(e))
            with self.lock:
                self.results.append(rec)
            self.stop_flag.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=15)

    def snapshot(self):
        with self.lock:
            return list(self.results)


def test_failover_under_load_with_the_openai_client():
    try:
        _failover_under_load()
    finally:
        set_mode("primary", None)
        set_mode("fallback", None)


def _failover_under_load():
    # 1. Healthy: the primary serves.
    with Load() as load:
        time.sleep(1.5)
        set_mode("primary", {"status": 503})
        onset = time.monotonic()
        seen_open = False
        deadline = onset + 3.0
        while time.monotonic() < deadline:
            seen_open = seen_open or circuit_states().get("primary") == "open"
            time.sleep(0.1)
    results = load.snapshot()
    span = max(r[1] for r in results) - min(r[0] for r in results)
    assert len(results) / span >= 10, f"{len(results)} requests in {span:.1f}s"
    errors = [r for r in results if r[3] is not None]
    assert not errors, f"client-visible errors: {errors[:5]}"
    before = [r[2] for r in results if r[1] < onset - 0.05]
    assert before and set(before) == {"primary"}, before
    # 2. Primary down: requests sent after the onset all come from the
    # fallback (failed attempts retried there), the first within 2 s.
    after = [r for r in results if r[0] >= onset]
    assert len(after) >= 20, len(after)
    assert {r[2] for r in after} == {"fallback"}, {r[2] for r in after}
    first = min(r[1] for r in results if r[2] == "fallback")
    assert first - onset <= 2.0, first - onset
    assert seen_open, f"primary never open on /metrics: {circuit_states()}"

    # 3. The whole route down: a 503 the client sees at once, with Retry-After.
    set_mode("fallback", {"status": 503})
    strict = oai(max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        strict.chat.completions.create(model="assistant", messages=MESSAGES, max_tokens=3)
    assert time.monotonic() - t0 < 2.0
    err = e.value
    assert err.status_code == 503, err
    assert isinstance(err, openai.InternalServerError)
    assert int(err.response.headers["retry-after"]) >= 1
    assert err.response.headers["x-hfbreaker-tier"] == "exhausted"
    assert err.response.headers["x-hfbreaker-endpoint"] == "none"
    assert err.body["code"] == "route_exhausted", err.body

    # 4. Everything back: traffic returns to the primary, with no error.
    set_mode("fallback", None)
    set_mode("primary", None)
    back = time.monotonic()
    returned = closed = None
    with Load() as load:
        while time.monotonic() < back + 15 and closed is None:
            time.sleep(0.1)
            hits = [r for r in load.snapshot() if r[2] == "primary"]
            if hits and returned is None:
                returned = min(r[1] for r in hits) - back
            if returned is not None and circuit_states().get("primary") == "closed":
                closed = time.monotonic()
        time.sleep(0.6)
    results = load.snapshot()
    errors = [r for r in results if r[3] is not None]
    assert not errors, f"client-visible errors after recovery: {errors[:5]}"
    assert returned is not None, f"primary never served again: {circuit_states()}"
    assert closed is not None, f"primary never closed again: {circuit_states()}"
    # Once its breaker has closed, the primary takes all the traffic again.
    tail = [r[2] for r in results if r[0] > closed + 0.05]
    assert tail and set(tail) == {"primary"}, tail
    print(f"primary served again {returned:.2f}s, closed {closed - back:.2f}s after it came back")
