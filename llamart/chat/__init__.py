"""Chat templates: a model's Jinja ``tokenizer.chat_template`` rendered as transformers does.

- :mod:`.template`: :class:`~llamart.chat.template.ChatTemplate` (compile once, render a
  conversation) and :func:`~llamart.chat.template.render_chat_template`;
- :mod:`.model_template`: the template of a loaded model (its own or an override) with its
  BOS/EOS texts, as the Engine uses it.

Nothing is imported here, so importing llamart does not import jinja2: the Engine imports the
template module on the first chat.
"""
