import pytest

from lcsynth.errors import BackendError
from lcsynth.text.chat import ChatTemplate

DOC = "json - JSON encoder and decoder.\n\n    dumps(obj) serialises obj to a str.\n" * 20
QUERY = "What does dumps return?"

LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def test_self_query_prompt_ends_exactly_at_the_user_turn_prefix(smol_tokenizer, smol_template):
    context = [{"role": "system", "content": DOC}]
    prompt = smol_template.self_query_prompt(context)
    full = smol_template.render([*context, {"role": "user", "content": QUERY}], add_generation_prompt=False)

    prompt_ids = smol_tokenizer.encode_special(prompt)
    full_ids = smol_tokenizer.encode_special(full)
    # token by token, the prompt is the conversation up to the first token of the user's text
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert smol_tokenizer.decode(full_ids[len(prompt_ids):]).startswith(QUERY)
    # and what follows the system turn is the user header alone, as special tokens
    system_ids = smol_tokenizer.encode_special(smol_template.render(context, add_generation_prompt=False))
    header_ids = prompt_ids[len(system_ids):]
    assert prompt_ids[: len(system_ids)] == system_ids
    assert header_ids == smol_tokenizer.encode_special("<|im_start|>user\n")
    assert len(header_ids) == 3  # <|im_start|>, "user", "\n": nothing of a user message


def test_self_query_prompt_works_for_other_templates():
    template = ChatTemplate(LLAMA3, bos_token="<|begin_of_text|>")
    prompt = template.self_query_prompt([{"role": "system", "content": "doc"}])
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\ndoc<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
    )


def test_template_errors_become_backend_errors():
    template = ChatTemplate("{{ raise_exception('system messages are not supported') }}")
    with pytest.raises(BackendError, match="system messages are not supported"):
        template.render([{"role": "system", "content": "x"}])
    dropping = ChatTemplate("{% for m in messages %}{{ m['role'] }}{% endfor %}")
    with pytest.raises(BackendError, match="drops user text"):
        dropping.self_query_prompt([{"role": "system", "content": "x"}])


def test_chat_template_is_sandboxed():
    sneaky = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(BackendError, match="is unsafe"):
        sneaky.render([{"role": "user", "content": "x"}])
