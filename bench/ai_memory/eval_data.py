"""A deterministic recall evaluation set: conversation turns, questions, and the turn that answers each.

Three kinds of question, so that each retriever has something it is bad at:
* paraphrase: the question shares almost no words with the answer (dense wins),
* identifier: the question names a ticket/order code, lots of turns look alike (keyword wins),
* mixed: a person's name plus a paraphrased attribute (both help).
Distractor turns reuse the same vocabulary, names and systems.
"""

from __future__ import annotations

import random

NAMES = [
    "Priya",
    "Marcus",
    "Elena",
    "Tomasz",
    "Aiko",
    "Kwame",
    "Sofia",
    "Liam",
    "Farah",
    "Diego",
    "Ingrid",
    "Ravi",
    "Chloe",
    "Mateo",
    "Yusuf",
    "Hannah",
    "Kenji",
    "Amara",
    "Oskar",
    "Leila",
    "Bruno",
    "Mei",
    "Nikolai",
    "Zara",
    "Felix",
    "Ananya",
    "Gabriel",
    "Noor",
    "Henrik",
    "Lucia",
]
JOBS = [
    ("a pediatric nurse", "works in healthcare looking after sick children"),
    ("a structural engineer", "designs the frames of bridges and buildings"),
    ("a pastry chef", "bakes cakes and desserts professionally"),
    ("a tax accountant", "handles people's returns with the revenue office"),
    ("an airline pilot", "flies passenger planes"),
    ("a public defender", "represents clients in criminal court"),
    ("a marine biologist", "studies life in the ocean"),
    ("a high school chemistry teacher", "teaches science to teenagers"),
    ("a firefighter", "responds to emergencies and puts out blazes"),
    ("a veterinarian", "treats sick animals"),
]
CITIES = [
    "Lisbon",
    "Nairobi",
    "Osaka",
    "Montreal",
    "Krakow",
    "Valparaiso",
    "Tbilisi",
    "Hobart",
    "Reykjavik",
    "Marrakesh",
]
SYSTEMS = ["billing", "payments", "search", "checkout", "inventory", "auth", "reporting", "notifications"]
PREFS = [
    ("I really can't stand cilantro, it tastes like soap to me.", "Which herb do I dislike?"),
    ("My blood type is O negative.", "What should the hospital know before a transfusion?"),
    ("I get seasick on boats, even on calm water.", "Is a cruise a good holiday idea for me?"),
    ("We adopted a grey tabby kitten named Pixel last spring.", "What is my cat called?"),
    ("My passport expires in August next year.", "When do I need to renew my travel document?"),
    ("I run 10 kilometres every Saturday morning along the river.", "What do I do for exercise on weekends?"),
    (
        "The spare house key is taped under the third step of the porch.",
        "Where can I find a way to get into the home if I'm locked out?",
    ),
    ("I'm vegetarian but I still eat eggs and cheese.", "What kind of diet do I follow?"),
    ("Our wedding anniversary is on the 14th of June.", "When should I plan a celebration with my spouse?"),
    ("I prefer aisle seats on long flights.", "Where do I like to sit on a plane?"),
    ("My daughter is learning the violin and practises every evening.", "Which instrument does my kid play?"),
    (
        "The mortgage payment goes out on the first business day of each month.",
        "When is the home loan debited?",
    ),
    ("I'm allergic to penicillin; it gave me hives as a child.", "Which antibiotic must I avoid?"),
    ("My favourite author is Ursula K. Le Guin.", "Whose novels do I love most?"),
    ("The car is a 2017 blue Subaru Outback.", "What vehicle do I drive?"),
    ("I moved to the night shift, so I sleep from 9am to 4pm.", "What hours do I rest during the day?"),
    ("My therapist appointments are every other Tuesday at noon.", "When do I see my counsellor?"),
    (
        "We keep the camping gear in the attic above the garage.",
        "Where are the tents and sleeping bags stored?",
    ),
    ("I'm training for a half marathon in October.", "What race am I preparing for?"),
    (
        "My grandmother's lasagna recipe uses nutmeg in the bechamel.",
        "What is the secret spice in granny's pasta bake?",
    ),
]
FILLER = [
    "Thanks, that helps a lot.",
    "Can you remind me later this week?",
    "Let's circle back on that tomorrow.",
    "I had a long day at work and I'm tired.",
    "The weather has been rainy all week.",
    "I need to buy groceries after the meeting.",
    "What time is it in {city} right now?",
    "{name} said the {system} dashboard looked slow again.",
    "We talked about the {system} roadmap today.",
    "{name} is visiting {city} next month for a conference.",
    "Please summarise the {system} incident notes.",
    "Ticket {code} was closed as a duplicate.",
    "The {system} team shipped a fix for {code}.",
    "{name} asked about my weekend plans.",
    "I watched a documentary about {city} last night.",
    "Remind me to email {name} about the {system} budget.",
    "Order {code} is still in the warehouse.",
]


def _code(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{rng.randint(10000, 99999)}"


def build(seed: int = 7, distractors: int = 1500) -> tuple[list[str], list[tuple[str, int, str]]]:
    """Returns (turns, questions) where each question is (text, index of answering turn, kind)."""
    rng = random.Random(seed)
    turns: list[str] = []
    questions: list[tuple[str, int, str]] = []
    for i, name in enumerate(NAMES):
        job, gloss = JOBS[i % len(JOBS)]
        city = CITIES[(i * 3) % len(CITIES)]
        turns.append(f"My cousin {name} is {job} and lives in {city}.")
        questions.append((f"What does {name} do for a living?", len(turns) - 1, "mixed"))
        _ = gloss
    for _ in range(40):
        code = _code(rng, rng.choice(["INC", "ORD", "TCK"]))
        system = rng.choice(SYSTEMS)
        city = rng.choice(CITIES)
        turns.append(f"{code}: the {system} job failed overnight because the {city} replica ran out of disk.")
        questions.append((f"why did {code} happen?", len(turns) - 1, "identifier"))
    for fact, q in PREFS:
        turns.append(fact)
        questions.append((q, len(turns) - 1, "paraphrase"))
    for _ in range(distractors):
        t = rng.choice(FILLER).format(
            name=rng.choice(NAMES),
            city=rng.choice(CITIES),
            system=rng.choice(SYSTEMS),
            code=_code(rng, rng.choice(["INC", "ORD", "TCK"])),
        )
        turns.append(t)
    # shuffle turns deterministically, remapping answers
    order = list(range(len(turns)))
    rng.shuffle(order)
    pos = {old: new for new, old in enumerate(order)}
    shuffled = [turns[old] for old in order]
    return shuffled, [(q, pos[a], kind) for q, a, kind in questions]
