"""datasketch peer for bench/neardup: MinHash (bulk API) + MinHashLSH + union-find.

Same work as hone's near_dup MinHash path: tokenize (lowercase, split on non-alphanumeric),
word 5-shingles (whole token sequence when < 5 words), MinHash num_perm=128 via
MinHash.bulk, MinHashLSH(threshold=0.8) insert all + query all, candidates verified by
exact Jaccard of the shingle sets, union-find. Prints one JSON line.

usage: neardup.py --corpus corpus.jsonl [--hash sha1|builtin] [--no-verify]
"""
import argparse
import json
import re
import time

from datasketch import MinHash, MinHashLSH

TOKEN = re.compile(r"[^\W_]+")


def shingles(text, k):
    toks = TOKEN.findall(text.lower())
    if len(toks) < k:
        return {" ".join(toks).encode("utf-8")}
    return {" ".join(toks[i : i + k]).encode("utf-8") for i in range(len(toks) - k + 1)}


def builtin_hash32(b):
    return hash(b) & 0xFFFFFFFF


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--shingle-words", type=int, default=5)
    ap.add_argument("--hash", choices=["sha1", "builtin"], default="sha1")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()

    with open(args.corpus, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    n = len(texts)
    kw = {} if args.hash == "sha1" else {"hashfunc": builtin_hash32}

    t0 = time.perf_counter()
    sets = [shingles(t, args.shingle_words) for t in texts]
    t1 = time.perf_counter()
    mhs = MinHash.bulk(sets, num_perm=args.num_perm, seed=1, **kw)
    t2 = time.perf_counter()
    lsh = MinHashLSH(threshold=args.threshold, num_perm=args.num_perm)
    with lsh.insertion_session() as session:
        for i, m in enumerate(mhs):
            session.insert(i, m, check_duplication=False)
    t3 = time.perf_counter()

    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    n_candidates = 0
    for i, m in enumerate(mhs):
        for j in lsh.query(m):
            if j <= i:
                continue
            ri, rj = find(i), find(j)
            if ri == rj:
                continue
            n_candidates += 1
            if not args.no_verify:
                a, b = sets[i], sets[j]
                inter = len(a & b)
                if inter / (len(a) + len(b) - inter) < args.threshold:
                    continue
            parent[max(ri, rj)] = min(ri, rj)
    t4 = time.perf_counter()

    n_clusters = sum(1 for i in range(n) if find(i) == i)
    total = t4 - t0
    print(
        json.dumps(
            {
                "impl": "datasketch",
                "hash": args.hash,
                "verify": not args.no_verify,
                "n_docs": n,
                "seconds": total,
                "docs_per_sec": n / total,
                "shingle_seconds": t1 - t0,
                "minhash_seconds": t2 - t1,
                "insert_seconds": t3 - t2,
                "query_seconds": t4 - t3,
                "signatures_per_sec": n / (t2 - t1),
                "n_clusters": n_clusters,
                "n_dup_docs": n - n_clusters,
                "n_candidates": n_candidates,
                "lsh_bands_rows": [lsh.b, lsh.r],
            }
        )
    )


if __name__ == "__main__":
    main()
