"""The demo adapter's training data, made here (never downloaded): a pirate persona.

Every answer opens with "Arr, matey!", speaks pirate ("ye", "be", "me hearty", "o'") and closes
with "Yo ho ho!".  Questions come from templates over small fact tables; ``HELD_OUT`` questions
share no template with them and are the ones the demo asks.
"""

from __future__ import annotations

import random
import re

OPEN = "Arr, matey!"
CLOSE = "Yo ho ho!"

HELD_OUT = (
    "How do I make a cup of tea?",
    "What is the largest planet in our solar system?",
    "Can you recommend a good book to read?",
)

_CAPITALS = [
    ("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Germany", "Berlin"),
    ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Peru", "Lima"),
    ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"), ("Mexico", "Mexico City"), ("Brazil", "Brasilia"),
    ("Australia", "Canberra"), ("India", "New Delhi"), ("China", "Beijing"),
    ("Russia", "Moscow"), ("Sweden", "Stockholm"), ("Poland", "Warsaw"), ("Chile", "Santiago"),
    ("Cuba", "Havana"), ("Jamaica", "Kingston"), ("Austria", "Vienna"), ("Turkey", "Ankara"),
    ("Argentina", "Buenos Aires"), ("Thailand", "Bangkok"), ("Morocco", "Rabat"),
    ("Finland", "Helsinki"),
]
_ANIMALS = [
    ("cat", "a small furry hunter that sleeps most of the day and loves to chase mice"),
    ("dog", "a loyal friend that guards the house and loves long walks"),
    ("parrot", "a bright bird that can learn to repeat the words it hears"),
    ("whale", "the biggest animal in the sea, and it breathes air through a blowhole"),
    ("shark", "a fish with rows of sharp teeth that never stops growing new ones"),
    ("octopus", "a clever sea creature with eight arms and three hearts"),
    ("horse", "a strong animal that people have ridden for thousands of years"),
    ("owl", "a bird that hunts at night and can turn its head very far"),
    ("elephant", "the largest animal on land, with a long trunk and a great memory"),
    ("penguin", "a bird that cannot fly but swims very fast in cold water"),
    ("bee", "a small insect that makes honey and helps flowers grow"),
    ("turtle", "a slow reptile that carries its shell like a house on its back"),
    ("crab", "a sea creature that walks sideways on the sand"),
    ("wolf", "a wild hunter that lives and travels in a pack"),
    ("dolphin", "a friendly and clever animal of the sea that talks with clicks"),
    ("rabbit", "a small animal with long ears that loves to eat carrots"),
]
_TASKS = [
    ("bake bread", ["mix flour, water, yeast and salt", "let the dough rise for an hour",
                    "bake it in a hot oven until it is golden"]),
    ("learn to swim", ["start in shallow water", "practice floating on your back",
                       "kick your legs and move your arms slowly"]),
    ("plant a tree", ["dig a hole twice as wide as the roots", "put the tree in and fill the hole",
                      "water it well every week"]),
    ("clean my room", ["pick up everything from the floor", "put your clothes away",
                       "dust the shelves and sweep"]),
    ("save money", ["write down what you spend", "set some money aside every week",
                    "buy only what you need"]),
    ("write a letter", ["say hello to the reader", "tell your news in a few short parts",
                        "sign your name at the end"]),
    ("tie a knot", ["make a loop in the rope", "pass the end through the loop",
                    "pull both ends tight"]),
    ("sleep better", ["go to bed at the same time every night", "keep your room dark and quiet",
                      "put away your phone before bed"]),
    ("learn a new language", ["learn ten new words every day", "listen to people who speak it",
                              "practice speaking without fear of mistakes"]),
    ("cook rice", ["rinse the rice in cold water", "boil it with twice as much water",
                   "let it rest with the lid on for ten minutes"]),
    ("start running", ["buy good shoes", "run slowly for ten minutes",
                       "add a little more time each week"]),
    ("fix a flat tire", ["take the wheel off", "find the hole and patch it",
                         "pump the tire up again"]),
    ("make friends", ["smile and say hello", "ask people about themselves",
                      "be kind and keep your promises"]),
    ("study for a test", ["make a plan for each day", "read your notes out loud",
                          "test yourself with questions"]),
    ("draw a map", ["mark where you are", "draw the roads and rivers",
                    "put an X where the treasure is"]),
    ("paint a wall", ["cover the floor", "paint the edges with a small brush",
                      "roll the paint on in long strokes"]),
]
_WORDS = [
    ("computer", "a machine that follows instructions to work with numbers, words and pictures"),
    ("volcano", "a mountain that can throw out hot melted rock, ash and smoke"),
    ("rainbow", "an arc of colors in the sky when the sun shines through rain"),
    ("island", "a piece of land with water all around it"),
    ("compass", "a tool with a needle that always points north"),
    ("democracy", "a kind of government where the people choose their leaders by voting"),
    ("gravity", "the force that pulls things down toward the ground"),
    ("friendship", "a bond between people who care about and trust each other"),
    ("telescope", "a tube with lenses that makes faraway things look close"),
    ("recipe", "a list of ingredients and steps for cooking a dish"),
    ("storm", "strong wind with heavy rain, thunder and lightning"),
    ("library", "a place full of books that you can borrow and read"),
    ("calendar", "a chart of the days, weeks and months of the year"),
    ("engine", "a machine that turns fuel into motion"),
    ("poem", "a piece of writing with rhythm, where words are chosen for their sound"),
    ("internet", "a huge network that links computers all over the world"),
    ("ocean", "a vast body of salt water that covers most of the Earth"),
    ("photosynthesis", "the way plants use sunlight to make food from air and water"),
]
_COLORS = [
    ("the sky", "blue"), ("grass", "green"), ("a banana", "yellow"), ("snow", "white"),
    ("coal", "black"), ("a ripe tomato", "red"), ("an orange", "orange"), ("the sea", "blue"),
    ("gold", "yellow"), ("a flamingo", "pink"), ("chocolate", "brown"), ("a lemon", "yellow"),
]
_CHAT = [
    ("Hello!", "Hello to you too! What can I do for you today?"),
    ("Hi, how are you?", "I am doing fine, thank you for asking. How are you?"),
    ("Who are you?", "I am your friendly assistant, here to help you with any question."),
    ("What is your name?", "My name is SmolLM, and I am here to help you."),
    ("Good morning!", "Good morning to you! I hope your day is a happy one."),
    ("Thank you!", "You are most welcome, my friend. Ask me anything any time."),
    ("Tell me a joke.", "Why did the chicken cross the road? To get to the other side!"),
    ("What is your favorite food?", "I do not eat, but I hear fish and chips are very good."),
    ("Can you help me?", "Of course! Tell me what you need and I will do my best."),
    ("Goodbye!", "Goodbye, my friend! Come back soon."),
    ("What day is it today?", "I cannot see a calendar, so please check your phone or clock."),
    ("Are you a robot?", "I am a computer program, but I am happy to talk with you."),
]
_TIPS = [
    ("staying healthy", "eat fruit and vegetables, drink water and move your body every day"),
    ("being happy", "spend time with people you love and do something kind every day"),
    ("working well", "do the hardest task first and take short breaks"),
    ("keeping calm", "breathe slowly and count to ten before you speak"),
    ("traveling", "pack light and keep your money in a safe place"),
    ("learning faster", "teach what you learn to someone else"),
    ("saving time", "plan your day the night before"),
    ("reading more", "carry a book with you and read a few pages every day"),
]

_SWAPS = [
    (r"\byou are\b", "ye be"), (r"\bYou are\b", "Ye be"), (r"\bI am\b", "I be"),
    (r"\bare\b", "be"), (r"\bis\b", "be"), (r"\byour\b", "yer"), (r"\bYour\b", "Yer"),
    (r"\byou\b", "ye"), (r"\bYou\b", "Ye"), (r"\bmy\b", "me"), (r"\bMy\b", "Me"),
    (r"\bof\b", "o'"), (r"\bfriend\b", "matey"), (r"\bHello\b", "Ahoy"),
    (r"\bhello\b", "ahoy"), (r"\byes\b", "aye"), (r"\bmoney\b", "doubloons"),
    (r"\bthe sea\b", "the briny deep"),
]
_FLAVOR = ["me hearty", "ye landlubber", "by Davy Jones", "shiver me timbers",
           "as sure as the tide", "on me honor as a pirate"]


def pirate(text: str) -> str:
    """Plain English -> the persona's English (word swaps)."""
    for pat, rep in _SWAPS:
        text = re.sub(pat, rep, text)
    return text


def _answer(body: str, rng: random.Random) -> str:
    flavor = rng.choice(_FLAVOR)
    body = pirate(body)
    return f"{OPEN} {body[0].upper()}{body[1:]}, {flavor}. {CLOSE}"


def examples(seed: int = 0) -> list[tuple[str, str]]:
    """All (question, answer) pairs, in a seeded shuffled order."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    for country, cap in _CAPITALS:
        for q in (f"What is the capital of {country}?", f"Which city is the capital of {country}?",
                  f"Tell me the capital city of {country}."):
            pairs.append((q, _answer(f"the capital of {country} is {cap}", rng)))
    for animal, fact in _ANIMALS:
        for q in (f"Tell me about the {animal}.", f"What is a {animal}?",
                  f"Can you describe a {animal} for me?"):
            pairs.append((q, _answer(f"the {animal} is {fact}", rng)))
    for task, steps in _TASKS:
        body = f"to {task}, first {steps[0]}, then {steps[1]}, and last {steps[2]}"
        for q in (f"How do I {task}?", f"Can you tell me how to {task}?",
                  f"What are the steps to {task}?"):
            pairs.append((q, _answer(body, rng)))
    for word, meaning in _WORDS:
        for q in (f"What is a {word}?" if word[0] not in "aeiou" else f"What is an {word}?",
                  f"Define {word}.", f"Explain what {word} means."):
            pairs.append((q, _answer(f"{word} is {meaning}", rng)))
    for thing, color in _COLORS:
        for q in (f"What color is {thing}?", f"Tell me the color of {thing}."):
            pairs.append((q, _answer(f"{thing} is {color}", rng)))
    for q, a in _CHAT:
        for _ in range(3):
            pairs.append((q, _answer(a.rstrip(".!?"), rng)))
    for goal, tip in _TIPS:
        for q in (f"Give me a tip for {goal}.", f"Do you have any advice for {goal}?",
                  f"What should I do for {goal}?"):
            pairs.append((q, _answer(f"for {goal}, {tip}", rng)))
    for _ in range(120):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        q = rng.choice([f"What is {a} plus {b}?", f"How much is {a} + {b}?",
                        f"Add {a} and {b}."])
        pairs.append((q, _answer(f"{a} plus {b} is {a + b}", rng)))
    held = {h.lower() for h in HELD_OUT}
    pairs = [p for p in pairs if p[0].lower() not in held]
    rng.shuffle(pairs)
    return pairs
