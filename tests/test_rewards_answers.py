"""VQA answers: negations, bounded open answers, look-alike letters, quoted letters, ground-truth alternatives
(issue 10, items 5 to 9), with the property that a rejected option never raises the reward."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mars.rewards import vqa_score
from mars.rewards.text import fold, normalise
from mars.rewards.vqa import MAX_ANSWER_CHARS, alternatives, answer_is_correct, option_letters

FAST = settings(max_examples=150, deadline=None, database=None)


@pytest.mark.parametrize("answer,truth", [
    ("not A", "A"),
    ("A is wrong", "A"),
    ("definitely not (A)", "A"),
    ("The answer isn't A", "A"),
    ("A is not correct", "A"),
    ("not yes", "Yes"),
    ("not white", "white"),
    ("It is not white.", "white"),
    ("no white car", "white"),
    ("not two", "two or 2"),
])
def test_negated_answers_earn_nothing(answer, truth):
    assert not answer_is_correct(answer, truth)


@pytest.mark.parametrize("answer,truth", [
    ("A. not the same", "A"),  # option text that starts with "not"
    ("No, there isn't.", "No"),
    ("No", "No"),
    ("Yes, definitely", "Yes"),
    ("The car is white.", "white"),
])
def test_affirmed_answers_stay_right(answer, truth):
    assert answer_is_correct(answer, truth)


@pytest.mark.parametrize("answer,truth", [
    ("red white blue green black yellow orange", "white"),  # all the colours
    ("0 1 2 3 4 5 6 7 8 9 10", "2"),  # all the numbers
    ("I find 2 people people people", "2"),  # the degenerate answer of issue 10
    ("red or white", "white"),  # a hedge
    ("either white or black", "white"),
    ("x" * MAX_ANSWER_CHARS + " white", "white"),
])
def test_open_answers_are_bounded(answer, truth):
    assert not answer_is_correct(answer, truth)


@pytest.mark.parametrize("answer,truth", [("2 people", "2"), ("white", "white"), ("It is a white car", "white car")])
def test_short_open_answers_with_a_few_extra_words_are_right(answer, truth):
    assert answer_is_correct(answer, truth)


def test_look_alike_letters_are_folded():
    assert fold("Yеs") == "Yes"  # Cyrillic e
    assert normalise("ＷＨＩＴＥ") == "white"  # fullwidth
    assert normalise("whi\u200bte") == "white"  # zero-width space
    assert answer_is_correct("Yеs", "Yes")
    assert answer_is_correct("Ａ", "A")
    assert not answer_is_correct("nоt yes", "Yes")  # a Cyrillic o must not hide the negation
    assert not answer_is_correct("nоt white", "white")
    assert not answer_is_correct("Α or B", "A")  # a Greek capital alpha still names option A


@pytest.mark.parametrize("answer", ["'D'", "‘D’", '"D"', "The answer is 'D'.", "«D»"])
def test_quoted_option_letters_are_read(answer):
    assert option_letters(answer) == {"D"}
    assert answer_is_correct(answer, "D")


def test_contractions_are_not_option_letters():
    assert option_letters("I'm sure it is D") == {"D"}
    assert option_letters("O'Neil wrote D") == {"D"}


@pytest.mark.parametrize("answer,truth", [
    ("2", "two or 2"),
    ("two", "two or 2"),
    ("There are 2.", "two or 2"),
    ("front left", "left or front left"),
    ("left", "left or front left"),
    ("white and orange", "orange and white or white and orange"),
    ("teal", "blue or green or teal"),
    ("u a s c", "uasc or (u a s c)"),
    ("21", "twenty-one or 21"),
])
def test_ground_truth_alternatives_accept_any_one(answer, truth):
    assert answer_is_correct(answer, truth)
    assert vqa_score(f"<think>t</think><answer>{answer}</answer>", truth)["accuracy"] == 1.0


def test_alternatives_split_on_the_word_or():
    assert alternatives("two or 2") == [["two"], ["2"]]
    assert alternatives("orange") == [["orange"]]
    assert not answer_is_correct("3", "two or 2")


@pytest.mark.parametrize("text", [
    "<think>t</think><answer>D</answer><answer>D</answer>",
    "<think>it is <answer>D</answer></think>",
    "<think>x <answer>D</answer></think><answer>D</answer>",
])
def test_vqa_answer_must_be_one_block_outside_think(text):
    assert vqa_score(text, "D")["accuracy"] == 0.0


# ---- property: adding a rejected option never raises the reward

BASES = ["A", "B", "(C)", "Yes", "No", "white", "2", "It is white", "two", "front left", "I think D"]
TRUTHS = ["A", "B", "C", "D", "Yes", "No", "white", "two or 2", "left or front left", "red"]
OPTIONS = ["A", "B", "C", "D", "yes", "no", "white", "red", "two", "2", "left"]
REJECTIONS = ["not {}", "{} is wrong", "definitely not ({})", "{} is incorrect", "it isn't {}", "no {}"]


@FAST
@given(
    st.sampled_from(BASES),
    st.sampled_from(TRUTHS),
    st.sampled_from(OPTIONS),
    st.sampled_from(REJECTIONS),
    st.sampled_from(["{base}, {rejected}", "{rejected}, {base}", "{base} {rejected}", "{rejected}. {base}"]),
)
def test_adding_a_rejected_option_never_raises_the_reward(base, truth, option, rejection, joint):
    # "no X" also says "no": for a yes/no question that is an answer, not only a rejection of X.
    assume(not (truth in ("Yes", "No") and rejection.startswith("no ")))
    before = vqa_score(f"<think>t</think><answer>{base}</answer>", truth)["score"]
    answer = joint.format(base=base, rejected=rejection.format(option))
    after = vqa_score(f"<think>t</think><answer>{answer}</answer>", truth)["score"]
    assert after <= before, (answer, truth)


# ---- property: the VQA reward and the evaluation's strict rule read the same answer

@FAST
@given(
    st.lists(st.sampled_from(["A", "not", "B", "yes", "no", "white", "2", "'D'", "or", "is", "wrong", "Yеs"]), max_size=6),
    st.sampled_from(["<think>t</think><answer>{}</answer>", "<answer>{}</answer>",
                     "<think><answer>{}</answer></think>", "<answer>{}</answer><answer>A</answer>"]),
    st.sampled_from(TRUTHS),
)
def test_vqa_reward_and_evaluation_agree(words, shape, truth):
    from mars.evaluation.evaluate import vqa_sample

    text = shape.format(" ".join(words))
    assert vqa_sample(text, truth).strict_correct == (vqa_score(text, truth)["accuracy"] == 1.0)
