"""Generate a reply to a prompt with a fine-tuned run or a base model, using the chat template
the run was trained with.

examples:
  ftune generate runs/20261125-130000-smollm2-135m-lora-sft "Give three tips for sleeping well."
  ftune generate smollm2-135m "What is the capital of France?" --temperature 0
"""

from __future__ import annotations

HELP = "generate a reply with a run or a base model"


def add_sampling_arguments(parser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest reply in tokens")
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--system", help="a system message placed before the conversation")
    parser.add_argument("--template", help="override the template (chat, chatml, alpaca, plain)")


def add_arguments(parser) -> None:
    parser.add_argument("source", help="a run directory, a built-in model name or a local model directory")
    parser.add_argument("prompt", nargs="+", help="the user message")
    add_sampling_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def check_sampling(args) -> None:
    from ftune.errors import FtuneError

    if args.max_new_tokens < 1:
        raise FtuneError("--max-new-tokens must be at least 1")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise FtuneError("--temperature must be 0 or more and --top-p in (0, 1]")


def run(args) -> int:
    import json

    from ftune.data.conversation import Message
    from ftune.eval.generator import load_generator

    check_sampling(args)
    generator = load_generator(args.source, args.template)
    messages = ([Message("system", args.system)] if args.system else []) + [Message("user", " ".join(args.prompt))]
    result = generator.reply(messages, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                             top_p=args.top_p, seed=args.seed, stream=not args.json)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    elif not result["ended_with_eos"]:
        print(f"\n[stopped at --max-new-tokens={args.max_new_tokens}]")
    return 0
