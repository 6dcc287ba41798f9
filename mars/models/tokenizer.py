"""A Qwen-style tokenizer trained locally: byte-level BPE on the built-in corpus, Qwen's special tokens and chat format.

Nothing is downloaded. The BPE is trained with the ``tokenizers`` library using the same normalisation and
pre-tokenisation as Qwen2's tokenizer (imported from transformers, so that the saved ``Qwen2Tokenizer`` rebuilds
exactly the pipeline it was trained with), then the special tokens are appended at the end of the vocabulary, where
Qwen keeps them. Training is deterministic: the corpus is fixed by a seed and the BPE trainer breaks ties by pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE

from mars.models.corpus import builtin_corpus

# Qwen's special tokens, in Qwen's order; the processor and model config refer to the vision ones by name.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
# Ordinary (non-special) added tokens: kept whole when decoding with skip_special_tokens, as Qwen3 does for them.
EXTRA_TOKENS: tuple[str, ...] = ("<think>", "</think>")

EOS_TOKEN = "<|im_end|>"  # a chat turn ends here; generation stops on it
PAD_TOKEN = "<|endoftext|>"

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."  # Qwen2.5-VL adds it when a chat has no system turn


def chat_template(default_system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """Qwen's chat format as a Jinja template, written for this project.

    One ``<|im_start|>ROLE\\n ... <|im_end|>\\n`` block per message; each image part becomes
    ``<|vision_start|><|image_pad|><|vision_end|>`` (the processor then repeats ``<|image_pad|>`` once per visual
    token), each video part the same with ``<|video_pad|>``; text parts are copied. Parts may carry extra keys (such
    as ``source``), which are ignored. ``add_generation_prompt`` opens the assistant turn; ``add_vision_id`` numbers
    the pictures ("Picture 1: ..."). Qwen2.5-VL prepends a default system turn, Qwen3-VL does not
    (``default_system_prompt=None``). All literal text is emitted through ``{{ ... }}`` so that whitespace control
    never eats a newline.
    """
    system = ""
    if default_system_prompt is not None:
        system = (
            "{%- if loop.first and message['role'] != 'system' -%}"
            "{{ '<|im_start|>system\\n' + " + repr(default_system_prompt) + " + '<|im_end|>\\n' }}"
            "{%- endif -%}"
        )
    return (
        "{%- set ns = namespace(images=0, videos=0) -%}"
        "{%- for message in messages -%}"
        + system
        + "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{%- if message['content'] is string -%}"
        "{{ message['content'] }}"
        "{%- else -%}"
        "{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
        "{%- set ns.images = ns.images + 1 -%}"
        "{%- if add_vision_id -%}{{ 'Picture ' + ns.images|string + ': ' }}{%- endif -%}"
        "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
        "{%- elif part['type'] == 'video' or 'video' in part -%}"
        "{%- set ns.videos = ns.videos + 1 -%}"
        "{%- if add_vision_id -%}{{ 'Video ' + ns.videos|string + ': ' }}{%- endif -%}"
        "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
        "{%- elif 'text' in part -%}"
        "{{ part['text'] }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- endif -%}"
        "{{ '<|im_end|>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
    )


def _qwen_pretokenize_regex() -> str:
    # Imported rather than restated: Qwen2Tokenizer rebuilds its pre-tokenizer from this pattern when loaded.
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    return PRETOKENIZE_REGEX


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE over ``texts`` with Qwen2's pipeline, ``vocab_size`` entries at most, no added tokens yet."""
    tokenizer = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_qwen_pretokenize_regex()), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,  # the built-in corpus is small: let rare pairs merge too, to reach a few thousand tokens
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is a token: any text can be encoded
        special_tokens=[],
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return tokenizer


def build_tokenizer(
    vocab_size: int = 3072,
    corpus_files: Sequence[str | Path] = (),
    default_system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
):
    """A ``Qwen2Tokenizer`` with ``vocab_size`` tokens in all (fewer if the corpus runs out of merges).

    ``corpus_files`` are extra UTF-8 text files (one training text per line) added to the built-in corpus.
    """
    from transformers import Qwen2Tokenizer

    added = len(SPECIAL_TOKENS) + len(EXTRA_TOKENS)
    if vocab_size < 256 + added:
        raise ValueError(f"vocab_size must be at least {256 + added} (all bytes and special tokens), got {vocab_size}")
    texts = builtin_corpus()
    for path in corpus_files:
        try:
            texts.extend(line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read corpus file {str(path)!r}: {exc}") from exc
    bpe = train_bpe(texts, vocab_size - added)
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in EXTRA_TOKENS])
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        chat_template=chat_template(default_system_prompt),
        errors="replace",
    )
    return tokenizer
