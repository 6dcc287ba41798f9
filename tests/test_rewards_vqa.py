"""VQA reward: format part, strict accuracy rules, dispatcher."""

import numpy as np
import pytest

from mars.rewards import ALL_KEYS, VQA_KEYS, default_compute_score, task_of, vqa_reward, vqa_score
from mars.rewards.vqa import answer_is_correct, ground_truth_answer, normalise, option_letters
from utils.reward_score.vqa import compute_score


def test_normalise():
    assert normalise("  (A) Yes!  It's_fine ") == "a yes it s fine"


@pytest.mark.parametrize(
    "answer", ["D", "(D)", "D.", "D. Medical Books", "Option D", "The answer is D", "d", "I think D", "**D**"]
)
def test_choice_letter_answers_that_are_right(answer):
    assert answer_is_correct(answer, "D")


@pytest.mark.parametrize(
    "answer", ["", "A", "a", "A or D", "D or B", "The answer is a book", "Medical", "I", "not D but A"]
)
def test_choice_letter_answers_that_are_wrong(answer):
    assert not answer_is_correct(answer, "D")


def test_article_a_is_not_option_a():
    assert option_letters("It is a travel book") == set()
    assert not answer_is_correct("It is a travel book", "A")
    assert answer_is_correct("A. not the same", "A")


@pytest.mark.parametrize("answer,truth,expected", [
    ("Yes", "Yes", True),
    ("yes, there is one.", "Yes", True),
    ("No", "Yes", False),
    ("Yes and no", "Yes", False),
    ("yesterday", "Yes", False),
    ("", "No", False),
    ("No.", "No", True),
])
def test_yes_no(answer, truth, expected):
    assert answer_is_correct(answer, truth) is expected


def test_free_text_needs_the_whole_phrase():
    assert answer_is_correct("It is a red car.", "red car")
    assert not answer_is_correct("red", "red car")  # the reference's reverse substring test accepted this
    assert not answer_is_correct("a redcar", "red car")


def test_ground_truth_forms():
    assert ground_truth_answer("<answer> B </answer>") == "B"
    assert ground_truth_answer(np.array(["Yes"], dtype=object)) == "Yes"
    assert ground_truth_answer(3) == "3"
    assert ground_truth_answer(None) == ""


def test_reward_parts():
    full = vqa_score("<think>look at both covers</think><answer>D</answer>", "D")
    assert full == {"score": 1.5, "format": 0.5, "accuracy": 1.0, "error": 0.0}
    no_think = vqa_score("<answer>D</answer>", "<answer>D</answer>")
    assert no_think["score"] == 1.25
    assert vqa_reward("<think>x</think><answer></answer>", "D") == 0.25


def test_missing_answer_block_scores_zero_accuracy_without_raising():
    # The reference raised here; text outside the answer block is not the answer.
    assert vqa_score("D", "D") == {"score": 0.0, "format": 0.0, "accuracy": 0.0, "error": 0.0}


def test_empty_or_one_letter_answer_does_not_get_full_marks():
    # The reference's substring tests gave both of these full accuracy.
    assert vqa_score("<answer></answer>", "Religion & Spirituality")["accuracy"] == 0.0
    assert vqa_score("<answer>e</answer>", "Religion & Spirituality")["accuracy"] == 0.0


def test_verl_wrapper_returns_fixed_float_keys():
    result = compute_score("spatialqa", "<answer>Yes</answer>", "Yes", None)
    assert tuple(result) == VQA_KEYS and all(type(value) is float for value in result.values())


def test_dispatcher_picks_the_task():
    assert task_of([[1, 2, 3, 4]]) == "grounding"
    assert task_of("<answer>[[1, 2, 3, 4]]</answer>") == "grounding"
    assert task_of("[]") == "grounding"
    assert task_of("B") == "vqa"
    assert task_of("[B]") == "vqa"
    assert task_of("Yes", {"task": "grounding"}) == "grounding"
    grounding = default_compute_score("llvip", "<answer>[[1, 2, 3, 4]]</answer>", "[[1, 2, 3, 4]]")
    vqa = default_compute_score("ocr_vqa", "<answer>B</answer>", "B")
    assert tuple(grounding) == tuple(vqa) == ALL_KEYS
    assert grounding["iou"] == 1.0 and vqa["accuracy"] == 1.0
    assert default_compute_score("x", "<answer>B</answer>", "B", None, sandbox_fusion_url=None)["score"] == 1.25
