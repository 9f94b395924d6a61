"""Serve finished runs and models to any OpenAI client: chat and text completions (the run's own
chat template; streaming), classification for classifier runs, embeddings for encoders. Runs
that share a base model load it once; the request's "model" field picks the run.

examples:
  ftune serve runs/20261130-120408-smollm2-135m-lora-sft runs/20261130-174651-minilm-l6-lora
  ftune serve RUN_A RUN_B smollm2-135m --port 8000
  ftune serve RUN --host 0.0.0.0 --api-key "$FTUNE_API_KEY"
then, in Python:
  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
  client.chat.completions.create(model="<run directory name>", messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

HELP = "serve runs to OpenAI clients (many adapters on one base)"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser) -> None:
    parser.add_argument("sources", nargs="+", metavar="RUN_OR_MODEL",
                        help="run directories, built-in model names, or exported model directories")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set FTUNE_API_KEY)")
    parser.add_argument("--max-tokens", type=int, default=2048, help="largest max_tokens a request may ask for")
    parser.add_argument("--allow-adapter-updates", action="store_true",
                        help="let clients load (POST /v1/models {\"source\": RUN}) and unload "
                             "(DELETE /v1/models/NAME) runs")
    parser.add_argument("--print-vllm", action="store_true",
                        help="print the vLLM command that serves the same LoRA runs on a GPU, and exit")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="generation requests decoded together per base model (1: one at a time)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests in flight at once; more get 429 'retry shortly' (default 64)")


def run(args) -> int:
    import os

    from ftune.errors import FtuneError

    if args.print_vllm:
        from ftune.serving.vllm import vllm_command

        command, warnings = vllm_command(args.sources)
        for warning in warnings:
            print(f"ftune serve: warning: {warning}")
        print(command)
        return 0
    for flag, value in (("--max-batch", args.max_batch), ("--max-queue", args.max_queue),
                        ("--max-tokens", args.max_tokens)):
        if value < 1:
            raise FtuneError(f"{flag} {value}: give a whole number of at least 1")
    api_key = args.api_key or os.environ.get("FTUNE_API_KEY")
    if args.host not in LOOPBACK and not api_key:
        raise FtuneError(f"--host {args.host}: serving beyond this machine needs an API key "
                         "(--api-key KEY or FTUNE_API_KEY)")
    from ftune.api import serve

    serve(args.sources, host=args.host, port=args.port, api_key=api_key, max_tokens=args.max_tokens,
          max_batch=args.max_batch, max_queue=args.max_queue, allow_updates=args.allow_adapter_updates)
    return 0
