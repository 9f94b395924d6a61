"""`ftune serve` started for real on a loopback port and spoken to with the official `openai`
client: two LoRA runs on one tiny Llama base, a classifier run and an encoder for embeddings."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import FIXTURES, REPO, only_run_dir, run_ftune

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
KEY = "test-key"
GEN = ["train.max_steps=3", "train.batch_size=4", "model.max_length=96", "generate.samples=0", "method=lora",
       "method.target_modules=all-linear", "train.learning_rate=0.01"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(cwd, *settings):
    result = run_ftune("train", *settings, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(cwd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    alpaca = _train(tmp_path_factory.mktemp("alpaca"), f"model={tiny_llama_dir}",
                    f"data.train={FIXTURES / 'gen' / 'alpaca.jsonl'}", *GEN)
    chat = _train(tmp_path_factory.mktemp("chat"), f"model={tiny_llama_dir}",
                  f"data.train={FIXTURES / 'gen' / 'chat.jsonl'}", *GEN, "train.seed=7")
    classifier = _train(tmp_path_factory.mktemp("classifier"), f"model={tiny_bert_dir}",
                        f"data.train={FIXTURES / 'reviews.csv'}", "train.epochs=1", "model.max_length=32")
    return {"alpaca": alpaca, "chat": chat, "classifier": classifier, "encoder": tiny_bert_dir}


def _start_server(*arguments: str):
    """``ftune serve ARGUMENTS`` on a free loopback port, once /health answers: (process, /v1 URL)."""
    import urllib.request

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen([sys.executable, "-m", "ftune.cli.main", "serve", *arguments, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server did not start:\n{process.stdout.read()[-3000:]}")
            time.sleep(0.3)


def _health(server: str) -> dict:
    import json
    import urllib.request

    return json.loads(urllib.request.urlopen(server.removesuffix("/v1") + "/health").read())


@pytest.fixture(scope="module")
def server(runs):
    process, url = _start_server(str(runs["alpaca"]), str(runs["chat"]), str(runs["classifier"]),
                                 str(runs["encoder"]), "--api-key", KEY, "--allow-adapter-updates")
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key=KEY, max_retries=0)


def _greedy_alone(run, messages, max_tokens=12) -> str:
    """The reply the run gives in a process of its own (ftune's generator, no server)."""
    from ftune.data.conversation import Message
    from ftune.eval.generator import load_generator

    generator = load_generator(str(run))
    reply = generator.reply([Message(m["role"], m["content"]) for m in messages], max_new_tokens=max_tokens,
                            temperature=0.0, top_p=1.0)
    return reply["reply"]


def test_models_list_every_run_with_its_base(client, runs):
    listed = {m.id: m for m in client.models.list().data}
    assert {runs["alpaca"].name, runs["chat"].name, runs["classifier"].name} <= set(listed)
    assert listed[runs["alpaca"].name].parent == listed[runs["chat"].name].parent  # one base, two adapters


def test_each_adapter_replies_as_its_run_does_alone_plain_and_streamed(client, runs):
    messages = [{"role": "user", "content": "Give three tips for staying healthy."}]
    replies = {}
    for key in ("alpaca", "chat"):
        name = runs[key].name
        plain = client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=0)
        assert plain.choices[0].message.content.strip() == _greedy_alone(runs[key], messages)
        assert plain.usage.prompt_tokens > 0 and plain.choices[0].finish_reason in ("stop", "length")
        chunks = list(client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
        assert chunks[0].choices[0].delta.role == "assistant"
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == plain.choices[0].message.content
        assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
        replies[key] = streamed
    assert replies["alpaca"] != replies["chat"]  # the two adapters differ, so a mix-up would show


def test_sixteen_concurrent_requests_across_adapters_each_get_their_own_reply(client, server, runs):
    prompts = ["Give three tips for staying healthy.", "Describe a warm and funny film.",
               "What is the capital of France?", "Write a short poem."]
    jobs = [(key, prompt) for prompt in prompts for key in ("alpaca", "chat")] * 2

    def ask(job):
        key, prompt = job
        reply = client.chat.completions.create(model=runs[key].name, messages=[{"role": "user", "content": prompt}],
                                               max_tokens=8, temperature=0)
        return reply.choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(ask, jobs))
    assert _health(server)["largest_batch"][runs["alpaca"].name] > 1  # requests were really decoded together
    alone = [ask(job) for job in jobs]
    assert together == alone


def test_classify_and_embeddings(client, runs):
    from ftune.api import predict

    response = client.post("/classify", body={"model": runs["classifier"].name,
                                              "input": ["a warm, funny film", "dull and slow"]}, cast_to=object)
    expected = [ranked[0][0] for _, ranked in predict(runs["classifier"], ["a warm, funny film", "dull and slow"])]
    assert [row["label"] for row in response["data"]] == expected
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-5 for row in response["data"])
    vectors = client.embeddings.create(model=runs["encoder"].name, input=["a warm film", "a cold film"]).data
    assert len(vectors) == 2 and abs(sum(x * x for x in vectors[0].embedding) - 1) < 1e-4


def test_concurrent_classify_requests_are_scored_together(client, server, runs):
    import json
    import urllib.request

    texts = [["a warm, funny film"], ["dull and slow", "a gorgeous movie"], ["boring"], ["great fun", "too long"]] * 3

    def classify(batch):
        return client.post("/classify", body={"model": runs["classifier"].name, "input": batch}, cast_to=object)["data"]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        together = list(pool.map(classify, texts))
    health = json.loads(urllib.request.urlopen(server.removesuffix("/v1") + "/health").read())
    assert health["largest_batch"][runs["classifier"].name] > 1
    alone = [classify(batch) for batch in texts]
    for got, expected in zip(together, alone):
        assert [row["label"] for row in got] == [row["label"] for row in expected]
        assert [row["index"] for row in got] == list(range(len(expected)))
        for a, b in zip(got, expected):
            assert all(abs(a["probabilities"][k] - b["probabilities"][k]) < 1e-5 for k in a["probabilities"])


def test_errors_are_shaped_like_openai_s(client, server, runs):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert runs["alpaca"].name in unknown.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=runs["alpaca"].name, messages=[{"role": "user", "content": "hi"}],
                                       temperature=7)
    assert bad.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as long_prompt:
        client.chat.completions.create(model=runs["alpaca"].name,
                                       messages=[{"role": "user", "content": "film " * 400}])
    assert long_prompt.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as wrong_kind:
        client.chat.completions.create(model=runs["classifier"].name, messages=[{"role": "user", "content": "hi"}])
    assert "classifier" in wrong_kind.value.body["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server, api_key="wrong", max_retries=0).models.list()


def test_a_public_host_needs_an_api_key(tmp_path, runs):
    result = run_ftune("serve", str(runs["classifier"]), "--host", "0.0.0.0", cwd=tmp_path)
    assert result.returncode != 0 and "needs an API key" in result.stderr


def test_print_vllm_names_the_base_and_every_adapter(tmp_path, runs):
    result = run_ftune("serve", str(runs["alpaca"]), str(runs["chat"]), "--print-vllm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    command = result.stdout.strip().splitlines()[-1]
    assert command.startswith("vllm serve ") and "--enable-lora" in command
    assert f"{runs['alpaca'].name}=" in command and f"{runs['chat'].name}=" in command
    refused = run_ftune("serve", str(runs["classifier"]), "--print-vllm", cwd=tmp_path)
    assert refused.returncode != 0 and "vLLM serves LoRA" in refused.stderr


def test_chat_page_streams_a_reply_in_headless_chromium(server, runs, tmp_path):
    """scripts/chat_page_check.py types into the page in headless Chromium, presses send and
    waits for the streamed reply."""
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("Chromium not installed (apt-get install chromium)")
    pytest.importorskip("websockets")
    shot = tmp_path / "chat.png"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "chat_page_check.py"), server.removesuffix("/v1"),
                             runs["alpaca"].name, "Give three tips for staying healthy.", str(shot), "--key", KEY],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    assert result.stdout.strip()  # the streamed reply reached the page
    assert shot.stat().st_size > 10_000


def test_adapters_unload_and_load_at_run_time(client, runs):
    name = runs["chat"].name
    messages = [{"role": "user", "content": "Describe a warm and funny film."}]
    before = client.chat.completions.create(model=name, messages=messages, max_tokens=8, temperature=0)
    assert client.delete(f"/models/{name}", cast_to=object)["deleted"] is True
    assert name not in {m.id for m in client.models.list().data}
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=name, messages=messages, max_tokens=8)
    # the other adapter on the same base still answers as its run does
    other = client.chat.completions.create(model=runs["alpaca"].name, messages=messages, max_tokens=8, temperature=0)
    assert other.choices[0].message.content.strip() == _greedy_alone(runs["alpaca"], messages, 8)
    loaded = client.post("/models", body={"source": str(runs["chat"])}, cast_to=object)
    parents = {m.id: m.parent for m in client.models.list().data}
    assert loaded["id"] == name and loaded["parent"] == parents[runs["alpaca"].name]  # back on the shared base
    after = client.chat.completions.create(model=name, messages=messages, max_tokens=8, temperature=0)
    assert after.choices[0].message.content == before.choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        client.post("/models", body={"source": "/nonexistent/run"}, cast_to=object)


def _connection(server: str):
    import http.client
    from urllib.parse import urlparse

    address = urlparse(server)
    return http.client.HTTPConnection(address.hostname, address.port, timeout=30)


def test_an_oversized_body_gets_413_whether_or_not_it_declares_its_length(server, runs):
    import json

    padding = "x" * 2_100_000  # over the 2 MB cap
    body = json.dumps({"model": runs["alpaca"].name, "messages": [{"role": "user", "content": padding}]}).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for chunked in (False, True):  # Content-Length declared, or a chunked body that declares nothing
        connection = _connection(server)
        if chunked:
            connection.request("POST", "/v1/chat/completions", headers=headers, encode_chunked=True,
                               body=(body[i:i + 65536] for i in range(0, len(body), 65536)))
        else:
            connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 413, (chunked, response.read()[:300])
        assert json.loads(response.read())["error"]["code"] == "body_too_large"
        connection.close()


def test_a_base_served_by_name_shares_its_copy_with_the_runs_on_it(runs, tiny_llama_dir):
    from ftune.serving.served import ServedModels

    served = ServedModels()
    base = served.add(str(tiny_llama_dir), "base", echo=lambda *_: None)
    run = served.add(str(runs["alpaca"]), echo=lambda *_: None)
    assert run.backend is base.backend and run.backend.adapters == {run.name}


@pytest.fixture(scope="module")
def one_slot_server(runs, tiny_llama_dir):
    """A server that admits one request at a time, serving a run and its base by name."""
    process, url = _start_server(str(runs["alpaca"]), str(tiny_llama_dir), "--max-queue", "1")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_a_full_queue_gets_429_and_a_client_gone_mid_stream_frees_its_slot(one_slot_server, runs, tiny_llama_dir):
    import json

    client = openai.OpenAI(base_url=one_slot_server, api_key="unused", max_retries=0)
    name, messages = runs["alpaca"].name, [{"role": "user", "content": "Write a long story."}]
    long = None  # a seed whose reply runs to max_tokens rather than stopping early
    for seed in range(30):
        reply = client.chat.completions.create(model=name, messages=messages, max_tokens=200, temperature=1.0,
                                               seed=seed)
        if reply.choices[0].finish_reason == "length":
            long = seed
            break
    assert long is not None, "no seed gave a 200-token reply"
    base_reply = client.chat.completions.create(model=tiny_llama_dir.name, messages=messages, max_tokens=6,
                                                temperature=0)
    assert base_reply.choices[0].message.content is not None  # the base by name answers beside its adapter
    cancelled_before = _health(one_slot_server)["cancelled_rows"]
    body = {"model": name, "messages": messages, "max_tokens": 200, "temperature": 1.0, "seed": long, "stream": True}
    stream = _connection(one_slot_server)
    stream.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = stream.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data:")  # the stream has begun
    with pytest.raises(openai.RateLimitError) as busy:
        client.chat.completions.create(model=name, messages=messages, max_tokens=4)
    assert busy.value.body["code"] == "queue_full"
    stream.close()
    # the client hung up after one chunk: its row stops and its slot comes back
    deadline = time.monotonic() + 20
    while (health := _health(one_slot_server))["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health["in_flight"] == 0
    assert health["cancelled_rows"] == cancelled_before + 1
    after = client.chat.completions.create(model=name, messages=messages, max_tokens=4)
    assert after.choices[0].message.content is not None
