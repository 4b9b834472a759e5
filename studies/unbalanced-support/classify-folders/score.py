"""Print: draw, method, queries whose top class is right, of them the 1-image class's, then
(since the KEEP runs) the queries and the 1-image class's queries."""
import csv, json, sys, os
root, name = sys.argv[1], sys.argv[2]
t=json.load(open(f'{root}/truth.json')); truth=t['truth']; rare=t['rare']
rows=list(csv.DictReader(open(f'{root}/pred-{name}.csv')))
ok=sum(truth[os.path.basename(r['path'])]==r['class'] for r in rows)
rr=sum(1 for r in rows if truth[os.path.basename(r['path'])]==rare and r['class']==rare)
rare_total=sum(1 for r in rows if truth[os.path.basename(r['path'])]==rare)
print(root, name, ok, rr, len(rows), rare_total)
