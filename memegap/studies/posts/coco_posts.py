"""A small, real posts table built from COCO captions (`memegap-posts build-coco`), for tests and the
README numbers of the posts study.

How it is built (every step fixed, so the table is the same on every machine):
1. Each COCO image is one post; its caption is the image's first caption (lowest annotation id).
2. Its tags are the COCO object names (the 80 categories) that at least 2 of the image's 5 captions
   mention (a name, its plural, or a caption word of CAPTION_WORDS such as "plane" → airplane), most
   mentioned first (ties by name): the annotators' agreement stands in for a poster's hashtags.
3. `data.tag_map` (conf/data/posts.yaml) turns tags into categories through COCO's supercategories:
   animal → animals, food → food, sports → sport, accessory → fashion, outdoor and vehicle → outdoor,
   person → nothing, the rest → other ("other" last: a picture of food on a table is food). An image whose tags give no category is left out (counted).
4. Users are disjoint groups of posts: the posts of each class (their first label) are shuffled with
   `seed`, then each user takes `posts_per_user` posts from the largest remaining class (even users)
   or half from each of the two largest (odd users); a class left with fewer than 3 posts gives them
   to the user that took from it last. A user's true categories (`user_categories`) are the classes
   of its posts.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from memegap.utils.tables import relative_to_table
from memegap.data.posts import CATEGORIES, SEPARATOR, class_labels, map_tags
from memegap.errors import UserError
from memegap.utils.io import atomic_path

COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # COCO 2017's 80 object categories
CAPTION_WORDS = {  # caption words that name a COCO object differently (ours)
    "man": "person", "woman": "person", "people": "person", "boy": "person", "girl": "person", "child": "person",
    "plane": "airplane", "jet": "airplane", "bike": "bicycle", "motorbike": "motorcycle", "puppy": "dog",
    "kitten": "cat", "ball": "sports ball", "racket": "tennis racket", "tennis": "tennis racket",
    "baseball": "baseball bat", "ski": "skis", "skiing": "skis", "surfing": "surfboard", "skateboarding": "skateboard",
    "phone": "cell phone", "television": "tv", "doughnut": "donut", "fridge": "refrigerator",
    "purse": "handbag", "luggage": "suitcase", "sofa": "couch",
}
OBJECT_OF_WORD = {name: name for name in COCO_NAMES} | CAPTION_WORDS
MIN_MENTIONS = 2  # captions (of 5) that must name an object for it to be a tag
MIN_LEFTOVER = 3  # a class with fewer posts left than this gives them to its last user


def caption_objects(caption: str) -> set[str]:
    """The COCO object names a caption mentions (singular or plural, or through CAPTION_WORDS)."""
    padded = " " + re.sub(r"[^a-z]+", " ", caption.lower()) + " "
    return {name for word, name in OBJECT_OF_WORD.items() if any(f" {word}{ending} " in padded for ending in ("", "s", "es"))}


def image_tags(captions: list[str]) -> list[str]:
    """The objects at least MIN_MENTIONS captions name, most mentioned first (ties by name)."""
    mentions = Counter(name for caption in captions for name in caption_objects(caption))
    return sorted((name for name, count in mentions.items() if count >= MIN_MENTIONS), key=lambda name: (-mentions[name], name))


def assign_users(posts_by_class: dict[str, list[dict]], posts_per_user: int, seed: int) -> list[list[dict]]:
    """Disjoint groups of posts (module docstring, step 4)."""
    rng = random.Random(seed)
    pools = {name: rng.sample(posts, len(posts)) for name, posts in sorted(posts_by_class.items())}
    users: list[list[dict]] = []
    while any(pools.values()):
        largest = sorted((name for name in pools if pools[name]), key=lambda name: (-len(pools[name]), name))
        shares = [(largest[0], posts_per_user)] if len(users) % 2 == 0 or len(largest) < 2 else \
            [(largest[0], posts_per_user - posts_per_user // 2), (largest[1], posts_per_user // 2)]
        user = []
        for name, count in shares:
            take = count if len(pools[name]) - count >= MIN_LEFTOVER else len(pools[name])
            user += pools[name][:take]
            pools[name] = pools[name][take:]
        users.append(user)
    return users


def build_coco_posts(coco_dir: str | Path, out: str | Path, tag_map: dict[str, str | None], posts_per_user: int = 6, seed: int = 0) -> dict:
    """Write the posts table `out` (CSV) from a COCO captions folder (captions.json with "images" and
    "annotations", the images beside it). Returns counts: posts, users, left out (no category) and
    posts per class."""
    coco_dir, out = Path(coco_dir), Path(out)
    captions_file = coco_dir / "captions.json"
    if not captions_file.is_file():
        raise UserError(f"{captions_file}: no such file (a COCO captions folder holds captions.json and its images)")
    coco = json.loads(captions_file.read_text())
    captions = defaultdict(list)
    for annotation in sorted(coco["annotations"], key=lambda annotation: annotation["id"]):
        captions[annotation["image_id"]].append(annotation["caption"].strip())
    posts_by_class, left_out = defaultdict(list), 0
    for image in sorted(coco["images"], key=lambda image: image["id"]):
        tags = image_tags(captions[image["id"]])
        labels = class_labels(map_tags(tags, tag_map, "error", Counter(), f"COCO image {image['id']}"), CATEGORIES, other=True)
        if not labels:
            left_out += 1
            continue
        posts_by_class[labels[0]].append({
            "post_id": str(image["id"]),
            "image_path": relative_to_table(coco_dir / image["file_name"], out),
            "caption": captions[image["id"]][0],
            "tags": SEPARATOR.join(tags),
        })
    users = assign_users(posts_by_class, posts_per_user, seed)
    class_of_post = {post["post_id"]: name for name, posts in posts_by_class.items() for post in posts}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["post_id", "username", "image_path", "caption", "tags", "user_categories"])
        writer.writeheader()
        for number, user in enumerate(users):
            user_categories = SEPARATOR.join(sorted({class_of_post[post["post_id"]] for post in user}))
            for post in user:
                writer.writerow({**post, "username": f"user{number:02d}", "user_categories": user_categories})
    return {"posts": sum(map(len, users)), "users": len(users), "left_out_no_category": left_out,
            "posts_per_class": {name: len(posts) for name, posts in sorted(posts_by_class.items())}}
