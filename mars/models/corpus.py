"""The built-in text the tiny tokenizer is trained on: the language of MARS prompts and answers (SPEC §3).

It covers what the four multi-source datasets ask and what a policy answers: grounding prompts over visible and
infrared photos, depth yes/no questions, six-camera driving questions with lettered options, book-cover VQA, the
``<think>``/``<answer>`` format with fenced json boxes, digits and JSON punctuation. A word list of plain English
widens the vocabulary so the byte-level BPE reaches a few thousand tokens.

Everything is generated from a fixed seed, so the corpus (and therefore the trained tokenizer) is the same on
every machine.
"""

from __future__ import annotations

import random

CAMERAS = ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
SOURCES = ("visible", "infrared", "RGB", "depth", "thermal", "page", "cover")
COLOURS = ("red", "blue", "green", "yellow", "white", "black", "orange", "purple", "brown", "grey", "pink")
OBJECTS = (
    "person", "car", "truck", "bus", "bicycle", "motorcycle", "pedestrian", "traffic cone", "barrier", "trailer",
    "chair", "table", "sofa", "bed", "lamp", "cup", "bottle", "book", "box", "door", "window", "plant", "dog", "cat",
    "tree", "sign", "pole", "bench", "building", "road", "sidewalk", "crosswalk", "wall", "shelf", "monitor",
)
RELATIONS = (
    "nearer to the camera than", "farther from the camera than", "to the left of", "to the right of", "above",
    "below", "closer to", "bigger than", "smaller than", "behind", "in front of", "taller than",
)
GENRES = (
    "Cookbooks, Food & Wine", "Children's Books", "Travel", "Science & Math", "Business & Money", "History",
    "Literature & Fiction", "Mystery, Thriller & Suspense", "Romance", "Health, Fitness & Dieting", "Humor",
    "Computers & Technology", "Religion & Spirituality", "Sports & Outdoors", "Arts & Photography", "Biographies",
)

# Plain English that prompts, reasoning and book titles are made of; widens the learned vocabulary.
WORDS = """
the a an and or but if then else of in on at to from by with without into onto over under between among through
is are was were be been being has have had do does did can could will would shall should may might must not no yes
this that these those there here where when which who whom whose what why how all any each every both either neither
one two three four five six seven eight nine ten first second third last next previous other another same different
image images photo photos picture pictures view views scene scenes camera cameras frame frames source sources sensor
detect detection find locate locating count counting output answer answers question questions reason reasoning think
thinking step steps look looking see seen shows show showing visible infrared depth map thermal night day light dark
bright dim shadow shadows warm cold heat body bodies figure figures shape shapes edge edges region regions area areas
bounding box boxes coordinate coordinates format json list object objects label labels category categories class
left right top bottom front back side middle center centre near far nearer farther closer distance distances between
above below behind beside next around inside outside upper lower corner corners street road roads lane lanes car cars
vehicle vehicles truck trucks bus buses bicycle bicycles motorcycle pedestrian pedestrians walking standing sitting
crossing driving parked moving stopped turning waiting ahead behind traffic light lights signal sign signs crosswalk
intersection junction highway parking lot building buildings house houses tree trees grass sky cloud clouds rain snow
fog wet dry road surface wall floor ceiling room kitchen bedroom office table chair chairs sofa bed lamp cup bottle
book books cover covers title titles author authors writer wrote written publisher published edition genre genres
novel story stories guide guides cookbook recipe recipes travel history science math business money children family
health fitness diet humor art arts photography biography memoir religion sports outdoors computer computers technology
programming language languages learning learn teach teaching student students school college university world life
love war peace time times year years day days week weeks month months home garden gardening music film films poetry
mystery thriller romance fantasy adventure classic classics collection complete practical introduction handbook
volume part chapter page pages text texts word words letter letters number numbers digit digits option options choice
choose select correct incorrect true false right wrong best most least more less many much few several some none
only also just very quite rather almost nearly exactly approximately about roughly clearly likely unlikely probably
certainly maybe perhaps because since so therefore thus hence while although though however moreover furthermore
red blue green yellow white black orange purple brown grey gray pink colour color colours colors large small big
little tall short wide narrow long high low new old young main whole full empty open closed single double multiple
person people man men woman women child children boy girl group crowd someone nobody everyone anyone driver rider
dog dogs cat cats animal animals bird birds horse plant plants flower flowers door doors window windows shelf shelves
monitor screen keyboard phone bag bags umbrella bench benches pole poles fence barrier barriers cone cones trailer
given using based according combine combined fuse fused fusion compare compared comparing both each modality modalities
information signal dominant decisive noise noisy contradict consistent inconsistent complementary reliable evidence
please provide describe description explain explanation determine identify identified recognise recognize consider
final result results score scores reward rewards accurate accuracy precise precisely carefully briefly directly
assistant user system helpful respond response responses reply message messages instruction instructions task tasks
""".split()


def _box(rng: random.Random) -> list[int]:
    x1, y1 = rng.randrange(0, 1200), rng.randrange(0, 1000)
    return [x1, y1, x1 + rng.randrange(8, 300), y1 + rng.randrange(8, 400)]


def _boxes_json(rng: random.Random, label: str) -> str:
    count = rng.randrange(1, 4)
    boxes = [f'{{"bbox_2d": [{", ".join(map(str, _box(rng)))}], "label": "{label}"}}' for _ in range(count)]
    return "```json\n[\n  " + ",\n  ".join(boxes) + "\n]\n```"


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice(".?!,;:")


def _grounding(rng: random.Random) -> str:
    a, b = rng.sample(SOURCES[:4], 2)
    label = rng.choice(OBJECTS)
    prompt = (
        f"Here are two images of the same scene: a {a} image and a {b} image. Detect all {label} in the images and "
        f"output their bounding boxes in JSON format, as a list of objects with the keys \"bbox_2d\" and \"label\"."
    )
    think = _sentence(rng, rng.randrange(6, 16))
    return f"{prompt}\n<think>{think}</think>\n<answer>{_boxes_json(rng, label)}</answer>"


def _spatial(rng: random.Random) -> str:
    c1, c2 = rng.sample(COLOURS, 2)
    o1, o2 = rng.sample(OBJECTS, 2)
    prompt = (
        f"Here are two images of the same scene, an RGB image and its depth map. Is the {c1} {o1} "
        f"{rng.choice(RELATIONS)} the {c2} {o2}? Answer Yes or No."
    )
    think = _sentence(rng, rng.randrange(5, 14))
    return f"{prompt}\n<think>{think}</think>\n<answer>{rng.choice(['Yes', 'No'])}</answer>"


def _driving(rng: random.Random) -> str:
    letters = "ABCDEF"[: rng.randrange(2, 7)]
    options = " ".join(f"{x}. {rng.choice(OBJECTS)} {rng.choice(RELATIONS)} the ego car" for x in letters)
    prompt = (
        f"Here are six images from the cameras {', '.join(CAMERAS)} of a car. What is in the {rng.choice(CAMERAS)} "
        f"view? {options}. Answer with the option's letter."
    )
    return f"{prompt}\n<think>{_sentence(rng, rng.randrange(5, 14))}</think>\n<answer>{rng.choice(letters)}</answer>"


def _book(rng: random.Random) -> str:
    title = " ".join(rng.choice(WORDS).capitalize() for _ in range(rng.randrange(2, 6)))
    question = rng.choice(
        [
            "Who wrote this book?", "What is the title of this book?", "What is the genre of this book?",
            f"Is this a {rng.choice(GENRES)} book?", "Is this book related to Travel?", "What type of book is this?",
        ]
    )
    answer = rng.choice([title, rng.choice(GENRES), "Yes", "No"])
    prompt = f"Here are two pages of a book, its front cover and its back cover. {question}"
    return f"{prompt}\n<think>{_sentence(rng, rng.randrange(4, 12))}</think>\n<answer>{answer}</answer>"


def builtin_corpus(lines: int = 3000, seed: int = 0) -> list[str]:
    """``lines`` deterministic training texts: every prompt family, the word list, and digit/punctuation drills."""
    rng = random.Random(seed)
    makers = (_grounding, _spatial, _driving, _book)
    texts = [makers[i % len(makers)](rng) for i in range(lines)]
    texts.append(" ".join(WORDS))
    texts.append(" ".join(w.capitalize() for w in WORDS))
    texts.append(" ".join(CAMERAS + SOURCES + COLOURS + OBJECTS + GENRES))
    texts.append("0 1 2 3 4 5 6 7 8 9 10 100 1000 0.5 0.25 3.14 -1")
    texts.append("[ ] { } ( ) , : ; \" ' ` ``` . ? ! - _ / \\ = + * % #")
    texts.append("Yes No yes no A B C D E F A. B. C. D. E. F. (A) (B) (C) (D) (E) (F)")
    return texts
