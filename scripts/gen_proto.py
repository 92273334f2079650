"""Regenerate logstream/_proto/ from proto/logstream.proto: python scripts/gen_proto.py"""

from pathlib import Path

from logstream._proto.gen import generate

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    for name, text in generate(ROOT / "proto").items():
        (ROOT / "logstream" / "_proto" / name).write_text(text)
        print(f"wrote logstream/_proto/{name}")
