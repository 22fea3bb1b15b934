"""A tokenizer trained on the spot and a tiny randomly initialised causal LM: trainers run on them with no download.

The tokenizer is byte-level BPE (any text encodes) with ChatML markup as special tokens and a ChatML chat
template, saved as a `transformers` tokenizer folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|im_start|>", "<|im_end|>", "<pad>"]


def train_tokenizer(texts: Iterable[str], folder: Path, vocab_size: int = 1000, extra: Iterable[str] = ()):
    """Train BPE on `texts`, add `extra` strings as whole tokens, save to `folder`; return the loaded tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                 pad_token="<pad>", chat_template=CHATML)
    hf.add_tokens(list(extra))
    hf.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def tiny_llama(tokenizer, max_positions: int, seed: int = 0):
    """A one-layer Llama with 32-wide hidden states over `tokenizer`'s vocabulary, randomly initialised."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=max_positions,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config)
