"""SFT, SFT+GRPO v1 and SFT+GRPO v2 on the same 200 test questions (the first 200 of the evidence's test split):
accuracy, event questions, side questions, frames, tool-call rate, format errors. Run from the repository root."""
import json, sys
def rows(path, limit=200):
    out = {}
    for line in open(path):
        r = json.loads(line); res = r.get('result')
        if res and r.get('run','agent')=='agent': out[res['item_id']] = res
    return dict(list(out.items())[:limit])
sft = rows('benchmarks/results/visual-cpu/session4-evidence/test-agent/results.jsonl')
for name, path in [('SFT', None), ('SFT+GRPO v1', 'benchmarks/results/visual-cpu/session4-evidence/test-grpo-v1/results.jsonl'), ('SFT+GRPO v2', 'benchmarks/results/visual-cpu/session4-evidence/test-grpo-v2/results.jsonl')]:
    rs = sft if path is None else rows(path)
    assert set(rs) == set(sft), name
    ev = [r for r in rs.values() if r['task'] != 'side']; side = [r for r in rs.values() if r['task']=='side']
    acc = lambda xs: 100*sum(r['trajectory']['answer']==r['label'] for r in xs)/len(xs)
    frames = lambda xs: sum(r['trajectory']['frames_used'] for r in xs)/len(xs)
    tool = lambda xs: sum(any(s['action']=='choose_frames' for s in r['trajectory']['steps']) for r in xs)/len(xs)
    fmt = sum(r['trajectory']['format_errors']>0 for r in rs.values())/len(rs)
    print(f"| {name} | {acc(rs.values()):.1f} ({len(rs)}) | {acc(ev):.1f} ({len(ev)}) | {acc(side):.1f} ({len(side)}) | {frames(ev):.2f} | {frames(side):.2f} | {tool(ev):.3f} | {tool(side):.3f} | {fmt:.3f} |")
