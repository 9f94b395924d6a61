"""Each generative format: rows parse into the exact examples, bad rows give the documented
reasons, and every registered format writes back what it reads."""

import json
from pathlib import Path

import pytest

from ftune.data.conversation import Conversation, Message, PlainText, PreferencePair
from ftune.data.formats import DataFormat, RowProblem, format_names, get_format, register_format
from ftune.errors import DataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gen"
U, A, S = (lambda c: Message("user", c)), (lambda c: Message("assistant", c)), (lambda c: Message("system", c))


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]


def problem(fmt: str, values: dict) -> str:
    with pytest.raises(RowProblem) as caught:
        get_format(fmt).parse(values)
    return str(caught.value)


def test_registry_lists_builtin_formats_and_rejects_duplicates_and_bad_names():
    assert format_names() == ["alpaca", "chat", "hh", "preference", "prompt_completion", "text"]
    with pytest.raises(ValueError, match="already registered"):
        register_format("chat")(type("Again", (DataFormat,), {"kind": "sft", "required_keys": frozenset({"x"})}))
    with pytest.raises(ValueError, match="lowercase"):
        register_format("auto")(type("Auto", (DataFormat,), {"kind": "sft", "required_keys": frozenset({"x"})}))
    with pytest.raises(TypeError, match="kind"):
        register_format("new_kind")(type("K", (DataFormat,), {"kind": "rl", "required_keys": frozenset({"x"})}))
    assert "new_kind" not in format_names()


def test_unknown_format_name_suggests_the_closest():
    with pytest.raises(DataError, match='data.format = "alpacca": unknown format. Did you mean "alpaca"?'):
        get_format("alpacca")
    with pytest.raises(DataError, match='"openai": unknown format. Did you mean "chat"?'):
        get_format("openai")


@pytest.mark.parametrize(("keys", "expected"), [
    ({"instruction", "output"}, ["alpaca"]),
    ({"instruction", "input", "output", "id"}, ["alpaca"]),
    ({"messages"}, ["chat"]),
    ({"prompt", "completion"}, ["prompt_completion"]),
    ({"text"}, ["text"]),
    ({"chosen", "rejected"}, ["hh"]),
    ({"prompt", "chosen", "rejected"}, ["preference"]),  # not prompt_completion, not hh
    ({"instruction", "input", "output", "text"}, []),  # alpaca exports with a rendered "text"
    ({"messages", "tools"}, []),
])
def test_matches_by_keys(keys, expected):
    assert [n for n in format_names() if get_format(n).matches(keys)] == expected


def test_alpaca_joins_instruction_and_input_with_a_blank_line():
    parsed = [get_format("alpaca").parse(r) for r in rows("alpaca.jsonl")]
    assert parsed[0] == Conversation([U("Give three tips for staying healthy."), A(
        "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Sleep seven to nine hours a night.")])
    assert parsed[1] == Conversation([U("Translate the sentence into French.\n\nThe cat is on the table."),
                                      A("Le chat est sur la table.")])
    assert get_format("alpaca").parse({"instruction": "Hi", "input": None, "output": "Hello"}).messages[0] == U("Hi")


def test_alpaca_bad_rows():
    assert problem("alpaca", {"instruction": "Hi"}) == 'missing "output" (alpaca rows need instruction and output)'
    assert problem("alpaca", {"instruction": " ", "output": "x"}) == (
        'empty "instruction" (alpaca rows need instruction and output)')
    assert problem("alpaca", {"instruction": "Hi", "output": 3}) == (
        '"output" is a number, expected a string (alpaca rows need instruction and output)')
    assert problem("alpaca", {"instruction": "Hi", "input": ["x"], "output": "y"}) == (
        '"input" is an array, expected a string (alpaca rows need instruction and output)')


def test_chat_multi_turn_with_system():
    parsed = [get_format("chat").parse(r) for r in rows("chat.jsonl")]
    assert parsed[4] == Conversation([S("Answer in French."), U("Good morning!"), A("Bonjour !"),
                                      U("Thank you."), A("Merci !")])
    assert parsed[3] == Conversation([U("What does HTTP stand for?"), A("HyperText Transfer Protocol.")])


@pytest.mark.parametrize(("messages", "reason"), [
    ([{"role": "user", "content": "Hi"}, {"role": "asistant", "content": "Hello"}],
     'messages[1].role = "asistant": expected system | user | assistant'),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}], "messages[1] (assistant) is empty"),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}, {"role": "user", "content": "?"}],
     'last message is "user": nothing to train on after it'),
    ([{"role": "user", "content": "Hi"}, {"role": "system", "content": "S"}, {"role": "assistant", "content": "Yo"}],
     "messages[1] is a system message: only the first message may be system"),
    ([{"role": "system", "content": "S"}, {"role": "assistant", "content": "Yo"}], "no user message"),
    ([{"role": "user", "content": "Hi"}], "no assistant message: nothing to train on"),
    ([{"role": "user", "content": None}, {"role": "assistant", "content": "Yo"}],
     "messages[0].content is null, expected a string"),
    ([{"role": "user"}, {"role": "assistant", "content": "Yo"}], 'messages[0] (user) has no "content"'),
    (["Hi"], 'messages[0] is a string, expected an object with "role" and "content"'),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", "weight": 0}],
     'messages[1] has "weight": per-turn "weight" is not supported (every assistant turn is trained)'),
    ([], '"messages" is an empty list'),
    ("Hi", '"messages" is a string, expected a list of {"role": ..., "content": ...} objects'),
])
def test_chat_bad_rows(messages, reason):
    assert problem("chat", {"messages": messages}) == reason


def test_prompt_completion_and_text():
    pc = get_format("prompt_completion")
    assert pc.parse(rows("prompt_completion.jsonl")[1]) == Conversation([U("Q: What colour is the sky?\nA:"), A(" Blue.")])
    assert problem("prompt_completion", {"prompt": "x", "completion": ""}) == (
        'empty "completion" (prompt_completion rows need prompt and completion)')
    assert get_format("text").parse(rows("text.jsonl")[2]) == PlainText(
        "A haiku has three lines of five, seven and five syllables.")
    assert problem("text", {"text": "\n"}) == 'empty "text" (text rows need text)'


def test_preference_strings_and_message_lists():
    parsed = [get_format("preference").parse(r) for r in rows("preference.jsonl")]
    assert parsed[0] == PreferencePair([U("What is the capital of Canada?")], "Ottawa.", "Toronto.")
    assert parsed[3] == PreferencePair(
        [S("You are polite."), U("Can you help me?"), A("Of course. With what?"), U("Spelling of 'necessary'.")],
        "It is spelled n-e-c-e-s-s-a-r-y.", "Look it up.")
    assert parsed[5] == PreferencePair([U("Is the Earth flat?")], "No, it is very nearly a sphere.", "Yes.")


def test_preference_bad_rows():
    assert problem("preference", {"prompt": "Q", "chosen": "Same. ", "rejected": "Same."}) == (
        "chosen and rejected are identical: no preference to learn")
    assert problem("preference", {"prompt": "Q", "chosen": "", "rejected": "No"}) == (
        'empty "chosen" (preference rows need prompt, chosen and rejected)')
    two = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert problem("preference", {"prompt": "Q", "chosen": two, "rejected": "x"}) == (
        "chosen must hold one assistant message, found: assistant, assistant")
    ends_with_reply = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert problem("preference", {"prompt": ends_with_reply, "chosen": "x", "rejected": "y"}) == (
        'prompt: last message is "assistant", expected "user" (the message the replies answer)')


def test_hh_prompt_is_the_shared_turns_and_replies_are_the_last():
    parsed = [get_format("hh").parse(r) for r in rows("hh.jsonl")]
    assert parsed[0] == PreferencePair([U("What is a good name for a goldfish?")],
                                       "How about Bubbles or Goldie?", "I don't know.")
    assert parsed[1] == PreferencePair(
        [U("How do I boil an egg?"), A("Put it in boiling water for about eight minutes."), U("And for a soft one?")],
        "About six minutes, then cool it in cold water.", "Just guess.")
    # A reply that writes the Assistant marker itself keeps it verbatim, inside the same turn.
    assert parsed[3].chosen == "Deep vein thrombosis, a blood clot in a deep vein.\n\nAssistant: It needs medical care."


def hh_text(*turns: str) -> str:
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns))


@pytest.mark.parametrize(("chosen", "rejected", "reason"), [
    ("\n\nHuman: Hi", hh_text("Hi", "Yo"), 'chosen has no Assistant turn (no "\\n\\nAssistant: " marker)'),
    (hh_text("Hi", "Yo"), hh_text("Hello", "Hey"), "chosen and rejected differ before the final reply: "
                                                    "turn 1 (Human) differs"),
    (hh_text("Hi", "Yo", "More?", "Sure"), hh_text("Hi", "Hey"),
     "chosen and rejected differ before the final reply: chosen has 4 turns, rejected 2"),
    (hh_text("Hi", "Yo"), hh_text("Hi", "Yo "), "chosen and rejected are identical: no preference to learn"),
    (hh_text("Hi", "Yo"), hh_text("Hi", ""), "rejected: the final Assistant reply is empty"),
    (hh_text("Hi", "Yo"), hh_text("Hi", "Hey", "Bye"), "rejected ends with a Human turn, expected a final Assistant reply"),
    ("Intro\n\nHuman: Hi\n\nAssistant: Yo", hh_text("Hi", "Hey"), 'chosen does not start with "\\n\\nHuman: "'),
])
def test_hh_bad_rows(chosen, rejected, reason):
    assert problem("hh", {"chosen": chosen, "rejected": rejected}) == reason


@pytest.mark.parametrize("name", format_names())
def test_every_format_writes_back_what_it_reads(name):
    """parse(to_record(x)) == x for every fixture row; adding a format needs a fixture."""
    fmt = get_format(name)
    for values in rows(f"{name}.jsonl"):
        example = fmt.parse(values)
        assert fmt.parse(fmt.to_record(example)) == example


def test_to_record_refuses_what_a_format_cannot_hold():
    with pytest.raises(RowProblem, match="alpaca holds one user turn and one reply"):
        get_format("alpaca").to_record(Conversation([S("sys"), U("Hi"), A("Yo")]))
    with pytest.raises(RowProblem, match="HH transcripts have no system turn"):
        get_format("hh").to_record(PreferencePair([S("sys"), U("Hi")], "a", "b"))
    with pytest.raises(RowProblem, match="text holds plain text, not a Conversation"):
        get_format("text").to_record(Conversation([U("Hi"), A("Yo")]))
