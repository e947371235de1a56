"""The gateway against the real clients (openai, huggingface_hub).

tests/gateway_clients.rs starts `hfbreaker simulate` (TGI `primary` and
`fallback`, TEI `emb`, hf-inference feature extraction `hfemb`) and the
daemon with the gateway (routes `assistant`: [primary, fallback],
`embeddings`: [emb], `hf-embeddings`: [hfemb]), then runs this file with:
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
    """TEI: the request goes through as sent. The client asks for base64
    by default; the simulated TEI answers floats, which the client accepts."""
    client = oai()
    raw = client.embeddings.with_raw_response.create(model="embeddings", input=["a", "bc"])
    assert raw.headers["x-hfbreaker-endpoint"] == "emb"
    assert sent_json(raw)["encoding_format"] == "base64"
    e = raw.parse()
    assert [d.index for d in e.data] == [0, 1]
    for d in e.data:
        assert d.embedding and all(isinstance(x, float) for x in d.embedding)


def test_openai_embeddings_hf_inference_default_base64_decodes_to_floats():
    """hf-inference: feature extraction translated, in the format asked.
    One input: the simulator's hf-inference answers a list of inputs with a
    single vector (the real API answers one per input)."""
    client = oai()
    raw = client.embeddings.with_raw_response.create(model="hf-embeddings", input="a")
    assert raw.headers["x-hfbreaker-endpoint"] == "hfemb"
    assert sent_json(raw)["encoding_format"] == "base64"
    # The wire carries base64 strings (little-endian float32)...
    wire = raw.http_response.json()
    assert len(wire["data"]) == 1
    packed = base64.b64decode(wire["data"][0]["embedding"])
    assert len(packed) % 4 == 0 and len(packed) > 0
    decoded = list(struct.unpack(f"<{len(packed) // 4}f", packed))
    # ...which the client decodes to floats.
    e = raw.parse()
    assert len(e.data) == 1
    assert all(isinstance(x, float) for x in e.data[0].embedding)
    assert e.data[0].embedding == pytest.approx(decoded)
    floats = client.embeddings.create(model="hf-embeddings", input="a", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(decoded, rel=1e-6)


def test_openai_models_list_names_the_routes():
    ids = [m.id for m in oai().models.list()]
    assert ids == ["assistant", "embeddings", "hf-embeddings"]


def test_openai_wrong_key_is_authentication_error():
    with pytest.raises(openai.AuthenticationError) as e:
        oai(api_key="sk-not-a-key", max_retries=0).chat.completions.create(model="assistant", messages=MESSAGES)
    assert e.value.status_code == 401


def test_openai_unknown_route_is_not_found():
    with pytest.raises(openai.NotFoundError) as e:
        oai(max_retries=0).chat.completions.create(model="no-such-route", messages=MESSAGES)
    assert e.value.status_code == 404
    assert "no-such-route" in str(e.value)


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


def test_hub_feature_extraction_path_is_not_served():
    """A known gap: `InferenceClient(base_url=G).feature_extraction(text)`
    POSTs `{"inputs": text}` to G itself (`POST /`), a path the gateway does
    not serve (it has `/v1/embeddings` only). Applications use the openai
    client's embeddings instead. This pins the answer so a change shows."""
    with pytest.raises(HfHubHTTPError) as e:
        hub().feature_extraction("a")
    assert e.value.response.status_code == 404, e.value.response.text


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
