"""`tunesmith serve` throughput: 8 greedy requests one at a time against the same 8 sent together (batched).

Run: .venv/bin/python bench/serve_batching.py [--model default] [--max-tokens 48] [--precision fp32]
Serves the model in this process (uvicorn on a free loopback port, the real app), asks 8 different counselling
prompts over HTTP one after another, then all at once, and prints completion tokens per second for both, the
ratio, and whether every answer was the same both ways. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

PROMPTS = ["I cannot sleep before exams.", "My friend stopped talking to me.", "I feel tired all the time.",
           "My boss criticised me in front of everyone.", "I miss my family since I moved.",
           "I am nervous about a job interview tomorrow.", "I argue with my sister every day.",
           "I do not enjoy my hobbies any more."]


def main() -> None:
    import httpx
    import uvicorn

    from tunesmith import chat
    from tunesmith import serve as serving

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    sessions = {"m": chat.open_session(args.model, say=lambda _: None, options={"precision": args.precision})}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = serving.create_app(sessions)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    def ask(prompt: str) -> tuple[str, int]:
        res = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=600, json={
            "model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens,
            "temperature": 0})
        body = res.json()
        return body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"]

    ask(PROMPTS[0])  # warm-up
    start = time.perf_counter()
    alone = [ask(p) for p in PROMPTS]
    one_at_a_time = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(ask, PROMPTS))
    batched = time.perf_counter() - start
    tokens = sum(n for _, n in alone)
    result = {"model": args.model, "precision": args.precision, "requests": len(PROMPTS),
              "max_tokens": args.max_tokens, "completion_tokens": tokens,
              "one_at_a_time_tok_s": round(tokens / one_at_a_time, 1),
              "concurrent_tok_s": round(sum(n for _, n in together) / batched, 1),
              "x_one_at_a_time": round(one_at_a_time / batched * sum(n for _, n in together) / tokens, 2),
              "same_answers": [a for a, _ in alone] == [t for t, _ in together],
              "batch_sizes_concurrent": app.state.batchers["m"].sizes[len(PROMPTS) + 1:]}
    print(f"one at a time {result['one_at_a_time_tok_s']} tok/s, 8 together {result['concurrent_tok_s']} tok/s: "
          f"{result['x_one_at_a_time']}x; same answers: {result['same_answers']}; batches of "
          f"{result['batch_sizes_concurrent']} rows")
    print(json.dumps(result))
    server.should_exit = True


if __name__ == "__main__":
    main()
