"""The names of the data formats tunesmith reads: the one list that config validates `data.format` against and
that data/formats.py registers a detector and a converter for, in detection order (tests/data/test_formats.py
checks the two agree). Its own module so that config, below the data stage, needs nothing of it.
"""

# the last two: the chat apps' data exports (data/exports.py)
ROW_FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "numbered_turns", "turns", "pairs", "text",
               "segments", "chatgpt_export", "claude_export")
SEGMENT = "segment"  # the role of a segments row's parts (Axolotl's template-free input_output): no chat template
FLAT_TURNS = "flat_turns"  # file-level: every record is one {role, content} turn
CHAT_LOG = "chat_log"  # file-level: every record is one {date, user, message} of a chat room (data/chatlog.py)
ALL_FORMATS = (*ROW_FORMATS, FLAT_TURNS, CHAT_LOG)
# Role names as files write them -> the roles tunesmith uses (the SFT formats and the preference shapes alike).
# "developer" is OpenAI's name for the system message since its o1 models (chat and fine-tuning files alike).
ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant",
                "human": "user", "gpt": "assistant", "model": "assistant", "developer": "system"}
# Role names of function-calling turns: OpenAI's "tool" and its older "function", Llama's "ipython", and
# LLaMA-Factory's ShareGPT "function_call" / "observation": known, so that a file with them reads, and their rows
# are skipped as function calling (formats.validate).
TOOL_ROLES = ("tool", "function", "ipython", "function_call", "observation")
TOOL = "tool"  # what they map to
