"""The official `openai` package against `hone serve`: one chat answer whole, the same streamed, and
a check that both equal `hone predict`'s answer to the same conversation (bytes).

usage: openai_client.py BASE_URL TOKEN PROMPT PREDICT_JSONL_LINE
"""
import json
import sys

from openai import OpenAI

base_url, token, prompt, predicted = sys.argv[1:5]
client = OpenAI(base_url=base_url, api_key=token, max_retries=0)
messages = [{"role": "user", "content": prompt}]

whole = client.chat.completions.create(model="served", messages=messages)
answer = whole.choices[0].message.content

pieces = []
for chunk in client.chat.completions.create(model="served", messages=messages, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
streamed = "".join(pieces)

cli = json.loads(predicted)["completion"]
bad = client.with_options(api_key="hone_wrong")
try:
    bad.chat.completions.create(model="served", messages=messages)
    denied = None
except Exception as e:  # openai.AuthenticationError
    denied = type(e).__name__

result = {
    "openai_version": __import__("openai").__version__,
    "answer": answer,
    "stream_chunks": len(pieces),
    "stream_equals_whole": streamed == answer,
    "whole_equals_hone_predict": answer == cli,
    "finish_reason": whole.choices[0].finish_reason,
    "usage": whole.usage.model_dump() if whole.usage else None,
    "wrong_token": denied,
}
print(json.dumps(result, indent=2))
sys.exit(0 if result["stream_equals_whole"] and result["whole_equals_hone_predict"] and denied else 1)
