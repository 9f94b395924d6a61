"""Chat in the terminal with a fine-tuned run or a base model. Replies stream as they are
generated; the conversation so far is sent each turn with the run's own template.

commands inside the chat: /reset (forget the conversation), /exit (or Ctrl-D)

examples:
  ftune chat runs/20261125-130000-smollm2-135m-lora-sft
  ftune chat smollm2-135m --system "You answer in one sentence."
"""

from __future__ import annotations

HELP = "interactive chat with a run or a base model"


def add_arguments(parser) -> None:
    from ftune.cli.generate import add_sampling_arguments

    parser.add_argument("source", help="a run directory, a built-in model name or a local model directory")
    add_sampling_arguments(parser)


def run(args) -> int:
    import sys

    from ftune.cli.generate import check_sampling
    from ftune.data.conversation import Message
    from ftune.eval.generator import load_generator

    check_sampling(args)
    generator = load_generator(args.source, args.template)
    system = [Message("system", args.system)] if args.system else []
    history: list[Message] = []
    print(f"ftune chat with {args.source} (template {generator.template.name}); /reset, /exit", flush=True)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            history = []
            print("(conversation cleared)")
            continue
        history.append(Message("user", text))
        sys.stdout.write("bot> ")
        sys.stdout.flush()
        result = generator.reply(system + history, max_new_tokens=args.max_new_tokens,
                                 temperature=args.temperature, top_p=args.top_p, seed=args.seed, stream=True)
        if not result["ended_with_eos"]:
            print(f"[stopped at --max-new-tokens={args.max_new_tokens}]")
        history.append(Message("assistant", result["reply"]))
