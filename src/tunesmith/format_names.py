"""The names of the data formats tunesmith reads: the one list that config validates `data.format` against and
that data/formats.py registers a detector and a converter for, in detection order (tests/data/test_formats.py
checks the two agree). Its own module so that config, below the data stage, needs nothing of it.
"""

# the last two: the chat apps' data exports (data/exports.py)
ROW_FORMATS = ("messages", "sharegpt", "function_calls", "alpaca", "prompt_completion", "numbered_turns", "turns",
               "pairs", "text",
               "segments", "chatgpt_export", "claude_export")
SEGMENT = "segment"  # the role of a segments row's parts (Axolotl's template-free input_output): no chat template
FLAT_TURNS = "flat_turns"  # file-level: every record is one {role, content} turn
CHAT_LOG = "chat_log"  # file-level: every record is one {date, user, message} of a chat room (data/chatlog.py)
ALL_FORMATS = (*ROW_FORMATS, FLAT_TURNS, CHAT_LOG)
# Role names as files write them -> the roles tunesmith uses (the SFT formats and the preference shapes alike).
# "developer" is OpenAI's name for the system message since its o1 models (chat and fine-tuning files alike).
ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant",
                "human": "user", "gpt": "assistant", "model": "assistant", "developer": "system"}
# Role names of a tool's output: OpenAI's "tool" and its older "function", Llama's "ipython", LLaMA-Factory's
# ShareGPT "observation". A turn that calls tools is CALL: OpenAI's assistant message with tool_calls (or the
# older function_call), LLaMA-Factory's "function_call" turn (data/calls.py reads them; it becomes an assistant
# turn with its calls).
TOOL_ROLES = ("tool", "function", "ipython", "observation")
TOOL = "tool"  # what they map to
CALL_ROLES = ("function_call",)
CALL = "tool_call"  # what they map to
# Every role name tunesmith knows without data.roles -> its role (CALL: the turns formats makes of tool_calls)
KNOWN_ROLES = {**ROLE_ALIASES, **dict.fromkeys(TOOL_ROLES, TOOL), **dict.fromkeys(CALL_ROLES, CALL), CALL: CALL}
