"""An Ollama Modelfile for an exported GGUF: TEMPLATE (Go template syntax), stop parameters, system prompt.

A Jinja chat template cannot be translated to Go in general, so the family is recognised by what the template
renders for a probe conversation (the same render path as training) and the family's Ollama template is
written; `render` is that Go template's output written in Python, and the recognition requires it to equal the
Jinja rendering of the probe, so a template that only looks like a family is refused rather than mistranslated.
"""

from __future__ import annotations

from typing import Any

from tunesmith import template
from tunesmith.errors import TunesmithError
from tunesmith.records import Message

# Per family: the Go template, the text before and after each turn, the generation prompt, stop strings.
FAMILIES: dict[str, dict[str, Any]] = {
    "chatml": {
        "turn": ("<|im_start|>{role}\n", "<|im_end|>\n"), "prompt": "<|im_start|>assistant\n",
        "stop": ("<|im_end|>", "<|im_start|>"),
        "go": ('{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n'
               '<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
               '{{ if $last }}<|im_start|>assistant\n{{ end }}\n{{- end }}')},
    "llama3": {
        "turn": ("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>"),
        "prompt": "<|start_header_id|>assistant<|end_header_id|>\n\n", "stop": ("<|eot_id|>", "<|start_header_id|>"),
        "go": ('{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 -}}'
               '\n<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>'
               '{{ if $last }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ end }}\n{{- end }}')},
    "gemma": {
        "turn": ("<start_of_turn>{role}\n", "<end_of_turn>\n"), "prompt": "<start_of_turn>model\n",
        "stop": ("<end_of_turn>", "<start_of_turn>"), "roles": {"assistant": "model"},
        "go": ('{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n'
               '<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}{{ .Role }}{{ end }}\n'
               '{{ .Content }}<end_of_turn>\n{{ if $last }}<start_of_turn>model\n{{ end }}\n{{- end }}')},
}
PROBE = (Message("user", "Hello?"), Message("assistant", "Hi."), Message("user", "How are you?"))


def render(family: str, messages: tuple[Message, ...] | list[Message]) -> str:
    """What the family's Go template renders for `messages` (the last one a user turn), in Python."""
    f = FAMILIES[family]
    before, after = f["turn"]
    roles = f.get("roles", {})
    body = "".join(before.format(role=roles.get(m.role, m.role)) + m.content + after for m in messages)
    return body + f["prompt"]


def family_of(tok: Any) -> tuple[str, str | None]:
    """(family, the system prompt the template adds when none is given) for the tokenizer's chat template.

    A leading BOS token in the Jinja rendering is not part of the Go template: llama.cpp adds BOS itself.
    """
    probe = template.render_text(tok, PROBE, add_generation_prompt=True)
    bos = getattr(tok, "bos_token", None)
    for text in [probe] + ([probe[len(bos):]] if bos and probe.startswith(bos) else []):
        for family in FAMILIES:
            if text == render(family, PROBE):
                return family, None
            before, after = FAMILIES[family]["turn"]
            head = before.format(role="system")
            if text.startswith(head) and after in text:  # a default system turn is injected (SmolLM2, Qwen2)
                default = text[len(head):text.index(after)]
                if text == render(family, (Message("system", default), *PROBE)):
                    return family, default
    raise TunesmithError("no Ollama TEMPLATE is known for this chat template (recognised: "
                         + ", ".join(FAMILIES) + ")", fix="use --format gguf and write the Modelfile's TEMPLATE "
                         "by hand (https://github.com/ollama/ollama/blob/main/docs/template.md)")


def modelfile(tok: Any, gguf_name: str, system: str | None) -> str:
    """The Modelfile text: FROM the GGUF beside it, TEMPLATE, SYSTEM (the training rows' shared system prompt,
    else the template's own default) and a stop per end-of-turn marker."""
    family, default_system = family_of(tok)
    f = FAMILIES[family]
    lines = [f"# Written by tunesmith export: {family} chat template", f"FROM ./{gguf_name}",
             f'TEMPLATE """{f["go"]}"""']
    if not template.supports_system(tok):  # training merged it into the first user turn; Ollama cannot
        lines.insert(1, "# The template has no system role: send instructions in the first user message")
        system = default_system = None
    if system or default_system:
        lines.append(f'SYSTEM """{system or default_system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in f["stop"]]
    return "\n".join(lines) + "\n"
