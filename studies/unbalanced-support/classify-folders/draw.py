"""Draw SEED [KEEP]: dSEED/support/<class>/ (one class of 1 image, four of 20) and dSEED/query/
(15 images of each class, or KEEP of those 75 drawn at random) as symlinks into the shared
mini-ImageNet test images; dSEED/truth.json."""
import csv, os, random, shutil, sys, json
from pathlib import Path

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "mini-imagenet"
seed=int(sys.argv[1])
rows=list(csv.reader(open(DATA / 'test.csv')))[1:]
by={}
for f,l in rows: by.setdefault(l,[]).append(f)
rng=random.Random(seed)
classes=rng.sample(sorted(by),5)
root=f'd{seed}'; shutil.rmtree(root, ignore_errors=True)
truth={}
for i,c in enumerate(classes):
    imgs=rng.sample(by[c], 35)
    n = 1 if i==0 else 20
    os.makedirs(f'{root}/support/{c}'); os.makedirs(f'{root}/query', exist_ok=True)
    for f in imgs[:n]: os.symlink(DATA / 'images' / f, f'{root}/support/{c}/{f}')
    for f in imgs[20:35]:
        os.symlink(DATA / 'images' / f, f'{root}/query/{f}'); truth[f]=c
if len(sys.argv) > 2:  # a few query images: KEEP of the 75, whatever their classes
    for f in rng.sample(sorted(truth), len(truth) - int(sys.argv[2])):
        os.remove(f'{root}/query/{f}'); del truth[f]
json.dump({'truth':truth,'rare':classes[0]}, open(f'{root}/truth.json','w'))
