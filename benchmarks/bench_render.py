"""Cost of bounded template rendering: the workbench's sandbox vs plain Jinja's SandboxedEnvironment.

Renders the same prompts (a short one, a RAG one with a loop over chunks) for many cases with both, interleaved,
and prints the median time per message and the ratio. Run: python benchmarks/bench_render.py [--cases N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from workbench.prompts import Prompt, RenderLimits, template_vars

TEMPLATES = {
    "short": "Question: {{ question }}\nAnswer briefly.",
    "rag-loop": "{% for c in chunks %}[{{ loop.index }}] {{ c.text }}\n{% endfor %}Question: {{ question|trim }}",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cases = [
        template_vars({"question": f"What does study {i} show about outcome {i % 7}?"},
                      {"chunks": [{"text": f"chunk {j} of case {i} " * 8} for j in range(4)]})
        for i in range(args.cases)
    ]
    plain_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    limits = RenderLimits()
    for name, text in TEMPLATES.items():
        prompt = Prompt("p", text)
        plain = plain_env.from_string(text)
        ours_t, base_t = [], []
        for _ in range(args.rounds):  # interleaved: both see the same machine load
            t = time.perf_counter()
            for v in cases:
                plain.render(v)
            base_t.append((time.perf_counter() - t) / len(cases))
            t = time.perf_counter()
            for v in cases:
                prompt.render(v, limits)
            ours_t.append((time.perf_counter() - t) / len(cases))
        base, ours = statistics.median(base_t), statistics.median(ours_t)
        print(f"{name:9s} plain sandbox {base * 1e6:7.1f} us/message  bounded {ours * 1e6:7.1f} us/message  "
              f"ratio {ours / base:.2f}")


if __name__ == "__main__":
    main()
