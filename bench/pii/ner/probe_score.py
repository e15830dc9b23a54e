"""Development scorer for the tagger alone: runs `ner_probe` (built with `cargo build --release -p hone-ner
--example ner_probe`; settings from the environment, e.g. SEED=2) on bench/pii's evaluation set and prints
typed overlap P/R/F2 per type, overall and on each half of the set. The product figures come from eval.py
(`hone data show`), not from here. Usage: python3 bench/pii/ner/probe_score.py [N_MISSED_TO_SHOW]"""
import json,re,subprocess,sys,collections,os
ROOT=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
rows=[json.loads(l) for l in open(os.path.join(ROOT,'bench/work/pii/pii_eval.jsonl'))]
inp="\n".join(r["text"] for r in rows)+"\n"
p=subprocess.run([os.path.join(ROOT,"target/release/examples/ner_probe")],input=inp,capture_output=True,text=True)
print("\n".join(l for l in p.stderr.splitlines() if "held-out" in l or "trained" in l))
M={"Person":"PERSON","Address":"ADDRESS","Location":"LOCATION","Org":"ORG"}
pred=collections.defaultdict(list)
for l in p.stdout.splitlines():
    sp,text=l.split("\t",1)
    for m in re.finditer(r"(Person|Address|Location|Org)\[(.*?)\](?= [A-Z][a-z]+\[|$)",sp):
        v=m.group(2); i=text.find(v)
        pred[text].append((M[m.group(1)],i,i+len(v)))
T=["PERSON","ADDRESS","LOCATION","ORG"]
per={t:collections.Counter() for t in T}
miss=[]
for r in rows:
    ps=pred.get(r["text"],[])
    for t in T:
        g=[s for s in r["spans"] if s[0]==t]; q=[s for s in ps if s[0]==t]
        per[t]["g"]+=len(g); per[t]["p"]+=len(q)
        per[t]["tr"]+=sum(any(s[1]<x[2] and x[1]<s[2] for s in q) for x in g)
        per[t]["tp"]+=sum(any(s[1]<x[2] and x[1]<s[2] for x in g) for s in q)
        if t=="PERSON":
            for x in g:
                if not any(s[1]<x[2] and x[1]<s[2] for s in q): miss.append(r["text"][x[1]:x[2]]+" | "+r["text"][:90])
half={r["text"]:i%2 for i,r in enumerate(rows)}
def prf(c):
    P=c["tp"]/max(c["p"],1);R=c["tr"]/max(c["g"],1);F=5*P*R/(4*P+R) if P+R else 0
    return f"P {P:.3f} R {R:.3f} F2 {F:.3f} (g {c['g']} p {c['p']})"
for h in (0,1):
    ph={t:collections.Counter() for t in T}
    for r in rows:
        if half[r["text"]]!=h: continue
        ps=pred.get(r["text"],[])
        for t in T:
            g=[s for s in r["spans"] if s[0]==t]; q=[s for s in ps if s[0]==t]
            ph[t]["g"]+=len(g); ph[t]["p"]+=len(q)
            ph[t]["tr"]+=sum(any(s[1]<x[2] and x[1]<s[2] for s in q) for x in g)
            ph[t]["tp"]+=sum(any(s[1]<x[2] and x[1]<s[2] for x in g) for s in q)
    print("half",h,"typed",prf(sum(ph.values(),collections.Counter())))
for t in T: print(t,prf(per[t]))
print("typed",prf(sum(per.values(),collections.Counter())))
if len(sys.argv)>1:
    print("\n".join(miss[:int(sys.argv[1])]))
