"""The simulator as the official Hugging Face and OpenAI clients see it.

Run by tests/fidelity.rs against `hfbreaker simulate --scenario tests/python/scenario.yml`;
SIM_URL is the simulator's base URL. One test per client call and fault.
"""

import json
import os

import numpy as np
import openai
import pytest
import requests
import text_generation
from huggingface_hub import InferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    OverloadedError,
    UnknownError,
    ValidationError,
)

SIM = os.environ["SIM_URL"].rstrip("/")
MODEL = "HuggingFaceH4/zephyr-7b-beta"
MESSAGES = [{"role": "user", "content": "ping"}]


def url(name):
    return f"{SIM}/{name}"


# ---------------------------------------------------------------- huggingface_hub


def test_hub_chat_completion_on_tgi():
    out = InferenceClient(base_url=url("tgi")).chat_completion(MESSAGES, max_tokens=3)
    assert out.choices[0].message.content == " pong and more"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason == "length"
    assert out.id == ""  # TGI's id is always empty
    assert out.usage.completion_tokens == 3


def test_hub_chat_completion_stream_on_tgi():
    chunks = list(InferenceClient(base_url=url("tgi")).chat_completion(MESSAGES, max_tokens=4, stream=True))
    assert len(chunks) == 4
    assert "".join(c.choices[0].delta.content for c in chunks) == " pong and more words"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_hub_chat_completion_stream_error_event_raises():
    with pytest.raises(Exception) as e:
        list(InferenceClient(base_url=url("tgi-stream-error")).chat_completion(MESSAGES, max_tokens=2, stream=True))
    assert "simulated stream failure" in str(e.value) or "422" in str(e.value)


def test_hub_chat_completion_on_router_with_token():
    client = InferenceClient(base_url=url("router") + "/v1", api_key="sim-key")
    out = client.chat_completion(MESSAGES, model=MODEL, max_tokens=2)
    assert out.choices[0].message.content == " pong and"
    assert out.id.startswith("chatcmpl-")


def test_hub_chat_completion_router_bad_token_raises_401():
    client = InferenceClient(base_url=url("router") + "/v1", api_key="wrong")
    with pytest.raises(HfHubHTTPError) as e:
        client.chat_completion(MESSAGES, model=MODEL, max_tokens=2)
    assert e.value.response.status_code == 401


def test_hub_text_generation():
    client = InferenceClient(model=url("tgi"))
    assert client.text_generation("ping", max_new_tokens=2) == " pong and"


def test_hub_text_generation_details():
    out = InferenceClient(model=url("tgi")).text_generation("ping", max_new_tokens=3, details=True)
    assert out.generated_text == " pong and more"
    assert out.details.generated_tokens == 3
    assert out.details.finish_reason == "length"
    assert [t.text for t in out.details.tokens] == [" pong", " and", " more"]


def test_hub_text_generation_stream():
    tokens = list(InferenceClient(model=url("tgi")).text_generation("ping", max_new_tokens=3, stream=True))
    assert tokens == [" pong", " and", " more"]


def test_hub_text_generation_stream_error_event_raises_overloaded():
    with pytest.raises(OverloadedError):
        list(InferenceClient(model=url("tgi-stream-error")).text_generation("ping", max_new_tokens=3, stream=True))


@pytest.mark.parametrize(
    "endpoint,error",
    [
        ("tgi-422", ValidationError),
        ("tgi-424", GenerationError),
        ("tgi-429", OverloadedError),
        ("tgi-500", IncompleteGenerationError),
    ],
)
def test_hub_text_generation_maps_tgi_error_types(endpoint, error):
    with pytest.raises(error):
        InferenceClient(model=url(endpoint)).text_generation("ping", max_new_tokens=2)


def test_hub_text_generation_503_unhealthy():
    # error_type "healthcheck" is not one the client knows: UnknownError, from the 503
    with pytest.raises(UnknownError, match="unhealthy") as e:
        InferenceClient(model=url("tgi-503")).text_generation("ping", max_new_tokens=2)
    assert e.value.__cause__.response.status_code == 503


def test_hub_text_generation_model_loading():
    with pytest.raises(HfHubHTTPError) as e:
        InferenceClient(model=url("tgi-loading")).text_generation("ping", max_new_tokens=2)
    assert e.value.response.status_code == 503
    body = e.value.response.json()
    assert "currently loading" in body["error"]
    assert body["estimated_time"] == 12.5


def test_hub_text_generation_api_key():
    assert InferenceClient(model=url("tgi-keyed"), token="sim-key").text_generation("ping", max_new_tokens=1) == " pong"
    with pytest.raises(HfHubHTTPError) as e:
        InferenceClient(model=url("tgi-keyed"), token="nope").text_generation("ping", max_new_tokens=1)
    assert e.value.response.status_code == 401
    assert e.value.response.content == b""  # TGI answers a bare 401


def test_hub_text_generation_timeout_on_hang():
    with pytest.raises(Exception) as e:
        InferenceClient(model=url("tgi-hang"), timeout=0.5).text_generation("ping", max_new_tokens=1)
    assert "timed out" in str(e.value).lower() or "timeout" in type(e.value).__name__.lower()


def test_hub_text_generation_connection_reset():
    with pytest.raises(requests.exceptions.ConnectionError):
        InferenceClient(model=url("tgi-reset")).text_generation("ping", max_new_tokens=1)


def test_hub_text_generation_garbage_body():
    with pytest.raises(Exception) as e:
        InferenceClient(model=url("tgi-garbage")).text_generation("ping", max_new_tokens=1)
    assert not isinstance(e.value, HfHubHTTPError)  # a 200 whose body is not JSON


def test_hub_text_generation_slow_still_answers():
    assert InferenceClient(model=url("tgi-slow"), timeout=5).text_generation("ping", max_new_tokens=1) == " pong"


def test_hub_feature_extraction_on_tei():
    out = InferenceClient(model=url("tei")).feature_extraction("ping")
    assert isinstance(out, np.ndarray)
    assert out.shape == (1, 8)
    assert abs(float(np.linalg.norm(out[0])) - 1.0) < 1e-5


def test_hub_feature_extraction_tei_429():
    with pytest.raises(HfHubHTTPError) as e:
        InferenceClient(model=url("tei-429")).feature_extraction("ping")
    assert e.value.response.status_code == 429
    assert e.value.response.json()["error_type"] == "Overloaded"  # PascalCase in TEI


def test_hub_feature_extraction_tei_api_key():
    out = InferenceClient(model=url("tei-keyed"), token="sim-key").feature_extraction("ping")
    assert out.shape == (1, 8)
    with pytest.raises(HfHubHTTPError) as e:
        InferenceClient(model=url("tei-keyed"), token="Sim-Key").feature_extraction("ping")
    assert e.value.response.status_code == 401


def test_hub_feature_extraction_hf_inference():
    out = InferenceClient(model=url("hfinf-emb/models/BAAI/bge-small-en-v1.5")).feature_extraction("ping")
    assert out.shape == (8,)


def test_hub_feature_extraction_hf_inference_list_is_one_vector_per_input():
    client = InferenceClient(model=url("hfinf-emb/models/BAAI/bge-small-en-v1.5"))
    out = client.feature_extraction(["ping", "pong", "ping"])
    assert out.shape == (3, 8)
    assert np.allclose(out[0], client.feature_extraction("ping"))
    assert np.allclose(out[0], out[2]) and not np.allclose(out[0], out[1])
    # The same model behind TEI gives the same vectors.
    tei = InferenceClient(model=url("tei")).feature_extraction(["ping", "pong", "ping"])
    assert np.allclose(out, tei)


def test_hub_text_generation_hf_inference_task_api():
    out = InferenceClient(model=url("hfinf/models/gpt2")).text_generation("ping", max_new_tokens=1)
    assert out == "ping pong"  # the task API returns the full text by default


def test_hub_hf_inference_model_loading():
    with pytest.raises(HfHubHTTPError) as e:
        InferenceClient(model=url("hfinf-loading/models/gpt2")).text_generation("ping", max_new_tokens=1)
    assert e.value.response.status_code == 503
    assert "gpt2 is currently loading" in str(e.value)


def test_hub_health_check():
    assert InferenceClient(model=url("tgi"), provider="hf-inference").health_check() is True
    assert InferenceClient(model=url("tei"), provider="hf-inference").health_check() is True
    assert InferenceClient(model=url("tgi-503"), provider="hf-inference").health_check() is False


def test_tgi_health_is_empty_200():
    r = requests.get(url("tgi") + "/health", timeout=5)
    assert r.status_code == 200 and r.content == b""
    r = requests.get(url("tgi-503") + "/health", timeout=5)
    assert r.status_code == 503
    assert r.json() == {"error": "unhealthy", "error_type": "healthcheck"}


def test_chat_sse_ends_with_done_with_a_space():
    r = requests.post(
        url("tgi") + "/v1/chat/completions",
        json={"model": "tgi", "messages": MESSAGES, "max_tokens": 1, "stream": True},
        timeout=5,
    )
    lines = [l for l in r.text.split("\n") if l]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][len("data: "):])["object"] == "chat.completion.chunk"


def test_generate_stream_has_no_done():
    r = requests.post(url("tgi") + "/generate_stream", json={"inputs": "ping", "parameters": {"max_new_tokens": 2}}, timeout=5)
    events = [json.loads(l[len("data:"):]) for l in r.text.split("\n") if l.startswith("data:")]
    assert len(events) == 2
    assert events[-1]["generated_text"] == " pong and"
    assert "[DONE]" not in r.text


def test_generate_headers():
    r = requests.post(url("tgi") + "/generate", json={"inputs": "ping", "parameters": {"max_new_tokens": 2}}, timeout=5)
    assert r.json() == {"generated_text": " pong and"}
    assert r.headers["x-generated-tokens"] == "2"
    assert float(r.headers["x-compute-time"]) > 0  # seconds
    assert "x-time-per-token" in r.headers  # milliseconds


# ---------------------------------------------------------------- text-generation


def test_textgen_client_generate():
    out = text_generation.Client(url("tgi")).generate("ping", max_new_tokens=2)
    assert out.generated_text == " pong and"
    assert out.details.generated_tokens == 2


def test_textgen_client_generate_stream():
    events = list(text_generation.Client(url("tgi")).generate_stream("ping", max_new_tokens=3))
    assert [e.token.text for e in events] == [" pong", " and", " more"]
    assert events[-1].generated_text == " pong and more"


@pytest.mark.parametrize(
    "endpoint,error",
    [
        ("tgi-422", text_generation.errors.ValidationError),
        ("tgi-424", text_generation.errors.GenerationError),
        ("tgi-429", text_generation.errors.OverloadedError),
        ("tgi-500", text_generation.errors.IncompleteGenerationError),
    ],
)
def test_textgen_client_errors(endpoint, error):
    with pytest.raises(error):
        text_generation.Client(url(endpoint)).generate("ping", max_new_tokens=1)


def test_textgen_client_stream_error_event():
    with pytest.raises(text_generation.errors.OverloadedError):
        list(text_generation.Client(url("tgi-stream-error")).generate_stream("ping", max_new_tokens=2))


def test_textgen_client_timeout_on_hang():
    with pytest.raises(requests.exceptions.Timeout):
        text_generation.Client(url("tgi-hang"), timeout=1).generate("ping", max_new_tokens=1)


def test_textgen_client_api_key():
    client = text_generation.Client(url("tgi-keyed"), headers={"Authorization": "Bearer sim-key"})
    assert client.generate("ping", max_new_tokens=1).generated_text == " pong"


# ---------------------------------------------------------------- openai


def oai(name, key="sim-key", **kw):
    return openai.OpenAI(base_url=url(name) + "/v1", api_key=key, max_retries=0, **kw)


def test_openai_chat_on_router():
    out = oai("router").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert out.choices[0].message.content == " pong and"
    assert out.object == "chat.completion"
    assert out.usage.total_tokens == 10


def test_openai_chat_stream_on_router():
    stream = oai("router").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == " pong and more"


def test_openai_embeddings_on_tei_base64_by_default():
    """openai asks for base64 unless told otherwise; TEI answers
    little-endian float32 in base64, which the client decodes."""
    import base64
    import struct

    client = oai("tei", key="unused")
    raw = client.embeddings.with_raw_response.create(model="BAAI/bge-small-en-v1.5", input=["ping", "pong"])
    assert json.loads(raw.http_response.request.content)["encoding_format"] == "base64"
    wire = raw.http_response.json()
    packed = [base64.b64decode(d["embedding"]) for d in wire["data"]]
    assert [len(p) for p in packed] == [32, 32]
    decoded = [list(struct.unpack("<8f", p)) for p in packed]
    e = raw.parse()
    assert [d.embedding for d in e.data] == [pytest.approx(d) for d in decoded]
    floats = client.embeddings.create(model="m", input=["ping", "pong"], encoding_format="float")
    assert isinstance(floats.data[0].embedding[0], float)
    assert [d.embedding for d in floats.data] == [pytest.approx(d, rel=1e-6) for d in decoded]
    native = InferenceClient(model=url("tei")).feature_extraction(["ping", "pong"])
    assert np.allclose(native, decoded)


def test_openai_models_on_router():
    assert [m.id for m in oai("router").models.list()] == [MODEL]


def test_openai_chat_on_tgi_messages_api():
    out = oai("tgi", key="-").chat.completions.create(model="tgi", messages=MESSAGES, max_tokens=1)
    assert out.choices[0].message.content == " pong"
    assert out.id == ""


def test_openai_auth_error():
    with pytest.raises(openai.AuthenticationError):
        oai("router", key="wrong").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)


def test_openai_rate_limit():
    with pytest.raises(openai.RateLimitError) as e:
        oai("router-429").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    assert e.value.response.headers["retry-after"] == "1"


def test_openai_server_error():
    with pytest.raises(openai.InternalServerError) as e:
        oai("router-500").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    assert e.value.status_code == 500


def test_openai_service_unavailable():
    with pytest.raises(openai.InternalServerError) as e:
        oai("router-503").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    assert e.value.status_code == 503


def test_openai_timeout_on_hang():
    with pytest.raises(openai.APITimeoutError):
        oai("router-hang", timeout=0.5).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)


def test_openai_connection_reset():
    with pytest.raises(openai.APIConnectionError):
        oai("router-reset").chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)


# ---------------------------------------------------------------- management API and control API


def test_endpoints_api_reads_state_without_waking():
    r = requests.get(url("endpoints-api") + "/v2/endpoint/my-org/zephyr", headers={"Authorization": "Bearer hf_sim"}, timeout=5)
    body = r.json()
    assert body["name"] == "zephyr"
    assert body["status"]["state"] == "running"
    assert body["status"]["readyReplica"] == 1
    zero = requests.get(url("endpoints-api-zero") + "/v2/endpoint/my-org/zephyr", timeout=5).json()
    assert zero["status"]["state"] == "scaledToZero"
    assert zero["status"]["url"] is None
    r = requests.get(url("endpoints-api") + "/v2/endpoint/my-org/zephyr", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401


def test_control_api_switches_a_mode_at_run_time():
    client = InferenceClient(model=url("tgi-switch"))
    assert client.text_generation("ping", max_new_tokens=1) == " pong"
    r = requests.put(f"{SIM}/_sim/endpoints/tgi-switch/mode", json={"status": 424}, timeout=5)
    assert r.status_code == 200
    with pytest.raises(GenerationError):
        client.text_generation("ping", max_new_tokens=1)
    listed = {e["name"]: e for e in requests.get(f"{SIM}/_sim/endpoints", timeout=5).json()["endpoints"]}
    assert listed["tgi-switch"]["mode"] == {"status": 424}
    assert listed["tgi-switch"]["overridden"] is True
    assert requests.delete(f"{SIM}/_sim/endpoints/tgi-switch/mode", timeout=5).status_code == 200
    assert client.text_generation("ping", max_new_tokens=1) == " pong"
    assert requests.put(f"{SIM}/_sim/endpoints/tgi-switch/mode", json={"sideways": 1}, timeout=5).status_code == 400
    assert requests.put(f"{SIM}/_sim/endpoints/nope/mode", json="ok", timeout=5).status_code == 404
