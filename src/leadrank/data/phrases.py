"""Phrase banks and the renderer that turns a lead's dialogue facts into a transcript.

Codes follow ``synth._DIALOGUE_EFFECTS``. Yes/no answers come from one shared bank whatever
the question, specialists use the customers' enthusiastic words as sales pitch, and the
follow-up notes are dated so that only their order tells which one is current.
"""

from __future__ import annotations

import random

SPECIALIST_NAMES = ["Lin", "Wang", "Chen", "Zhao", "Liu", "Sun", "Zhou", "Wu", "Xu", "Ma", "Hu", "Guo"]
STORES = ["Hefei", "Suzhou", "Chengdu", "Wuhan", "Hangzhou", "Xi'an", "Nanjing", "Qingdao"]
MODELS = ["L6", "L7", "L8", "L9"]
BRANDS = ["BYD Han", "Tesla Model Y", "NIO ES6", "XPeng G9", "Zeekr 001", "AITO M7"]

GREETINGS = [
    "Hi, this is {name} from the {store} store. You left your number on our {model} page?",
    "Good afternoon, {name} here from the {store} showroom, calling about your enquiry.",
    "Hello! {name} from the {store} store. Is now a good time to talk about the {model}?",
    "Hi there, it's {name}. I saw you configured a {model} in the app.",
]
CUSTOMER_OPENERS = [
    "Hi, yes, I filled in the form.",
    "oh hi. yes that was me",
    "Yes, I have a few minutes.",
    "hello, who is this again?",
    "Sure, go ahead.",
    "I'm a bit busy but ok.",
]

YES = [
    "Yes, definitely.",
    "Yeah, sure.",
    "Yes, that's right.",
    "Sure, why not.",
    "Yes please.",
    "Mm, yes.",
    "I think so, yes.",
    "Correct.",
]
NO = [
    "No, not really.",
    "Not at the moment.",
    "No, I don't think so.",
    "Nah.",
    "No, not yet.",
    "Not right now, no.",
    "I'd say no.",
    "No.",
]
HEDGES = ["Well, ", "Hmm, ", "To be honest, ", "Let me think... ", "", "", "", ""]

QUESTIONS = {
    "test_drive_answer": [
        "Would you like to book a test drive this week?",
        "Shall I reserve a test drive slot for you?",
        "Do you want to come in and drive the {model}?",
    ],
    "other_brands_answer": [
        "Are you still comparing other brands?",
        "Are you looking at other cars as well?",
        "Is another brand still on your list?",
    ],
    "hold_slot_answer": [
        "Shall I hold a delivery slot for you this month?",
        "Would you like me to reserve one from the current batch?",
        "Should I put your name down for the next delivery batch?",
    ],
    "price_obstacle_answer": [
        "Is the price still the main obstacle for you?",
        "Is the budget the thing holding you back?",
        "Would the price stop you from going ahead?",
    ],
}

TIMING = {
    1: [
        "I want to get it done before the subsidy ends.",
        "Our lease runs out next month, so we need a car soon.",
        "We'd like to pick it up before the holiday.",
        "If the numbers work I could sign this week.",
    ],
    2: [
        "Maybe next year, we're in no hurry.",
        "Just looking for now, really.",
        "Probably after the summer, let's see.",
        "No rush, the old car still runs fine.",
    ],
}
SUBSIDY_PITCH = [
    "Just so you know, the purchase-tax subsidy ends at the end of the month.",
    "A reminder that the subsidy ends soon, so it's a good time to decide.",
]

DECISION_MAKER = {
    1: [
        "My wife has to see it first.",
        "I need to bring my husband to look at it before deciding.",
        "My parents are helping pay, they want to see it first.",
    ],
    2: [
        "My wife has already seen it and she likes it.",
        "My husband already approved the budget.",
        "My parents saw it last weekend and they're on board.",
    ],
}

COMPETITOR = {
    1: [
        "We went with the {brand} in the end, sorry.",
        "We already put down a deposit on the {brand}.",
        "Thanks, but we bought the {brand} last week.",
    ],
    2: [
        "We almost went with the {brand}, but yours has more space.",
        "I nearly ordered the {brand}, but the range here is better.",
        "We were close to buying the {brand} before we saw this one.",
    ],
    3: [
        "Honestly we're seriously considering the {brand} too.",
        "The {brand} dealer made us a good offer, we're thinking about it.",
        "We're leaning towards the {brand} at the moment.",
    ],
    4: [
        "We're not considering the {brand} any more.",
        "We dropped the {brand} from the list.",
        "The {brand} is off the table now.",
    ],
}

CONCERNS = [
    ("What's the real range in winter?", "In winter you can expect about 80 % of the rated range, and the heat pump helps."),
    ("I'm worried about charging at home.", "We can send an installer to check your parking spot for a wallbox."),
    ("How long is the delivery time now?", "Current orders are delivered in about four weeks."),
    ("What financing options do you have?", "We have a zero-interest plan over three years for this model."),
    ("Can I trade in my old car?", "Yes, we can value your car in the store and take it as part of the payment."),
    ("Is there enough space for three kids?", "The second row fits three child seats, and the third row folds flat."),
]
RESOLVED = ["OK, that solves it.", "Great, that works for us.", "Good, that was my main worry.", "Alright, that makes sense."]
UNRESOLVED = [
    "Hmm, I'm still not convinced.",
    "I'll have to think about that.",
    "That doesn't really help us.",
    "Not sure that works for us.",
]

ENTHUSIASM = [
    "The {model} looks great.",
    "I really love the interior.",
    "The big screen in the back is perfect for the kids.",
    "It drives really smoothly.",
]
PITCH = [
    "The {model} is a great fit for families.",
    "Customers really love the interior.",
    "It drives really smoothly, you'll see.",
]
SMALL_TALK = [
    ("Customer", "Sorry, I'm driving, can you text me the details?"),
    ("Customer", "It's raining again here."),
    ("Customer", "What colours does it come in?"),
    ("Specialist", "I'll send you the brochure on WeChat."),
    ("Specialist", "Our store is open until 9 pm on weekdays."),
    ("Customer", "Is the showroom near the metro?"),
]

NOTES = {
    0: ["Sent brochure.", "Customer asked for the price list.", "Left a voicemail."],
    1: [
        "Customer keen, asked to confirm the trim and colour.",
        "Customer called back, wants the quote today.",
        "Warm: customer asked about the deposit.",
    ],
    2: [
        "No answer, customer seems to have gone quiet.",
        "Customer said they are busy, call again later.",
        "Cold: customer did not reply to messages.",
    ],
}


def render(facts: dict[str, int], rand: random.Random, name: str) -> str:
    """One transcript: greeting, the facts in random order with noise, then dated notes."""
    model = rand.choice(MODELS)
    fill = {"name": name, "store": rand.choice(STORES), "model": model, "brand": rand.choice(BRANDS)}
    lines = [("Specialist", rand.choice(GREETINGS)), ("Customer", rand.choice(CUSTOMER_OPENERS))]
    events = [_event(key, code, rand) for key, code in facts.items() if code and key != "last_note"]
    events += [[rand.choice(SMALL_TALK)] for _ in range(rand.randint(0, 2))]
    if rand.random() < 0.35:
        events.append([("Specialist", rand.choice(SUBSIDY_PITCH))])
    if rand.random() < 0.3:
        events.append([("Specialist", rand.choice(PITCH))])
    rand.shuffle(events)
    for event in events:
        lines += event
    text = [f"{speaker}: {_noisy(line.format(**fill), rand) if speaker == 'Customer' else line.format(**fill)}" for speaker, line in lines]
    return "\n".join(text + _notes(facts.get("last_note", 0), rand))


def _event(key: str, code: int, rand: random.Random) -> list[tuple[str, str]]:
    if key in QUESTIONS:
        answer = rand.choice(YES if code == 1 else NO)
        hedge = rand.choice(HEDGES)
        return [("Specialist", rand.choice(QUESTIONS[key])), ("Customer", hedge + (answer[0].lower() + answer[1:] if hedge else answer))]
    if key == "timing":
        return [("Customer", rand.choice(TIMING[code]))]
    if key == "decision_maker":
        return [("Customer", rand.choice(DECISION_MAKER[code]))]
    if key == "competitor":
        return [("Customer", rand.choice(COMPETITOR[code]))]
    if key == "concern":
        question, answer = rand.choice(CONCERNS)
        return [("Customer", question), ("Specialist", answer), ("Customer", rand.choice(RESOLVED if code == 1 else UNRESOLVED))]
    if key == "customer_enthusiasm":
        return [("Customer", rand.choice(ENTHUSIASM))]
    raise KeyError(f"no phrases for fact {key!r}")


def _notes(last: int, rand: random.Random) -> list[str]:
    """Dated follow-up notes, oldest first; only the last one reflects the fact ``last``."""
    if last == 0:
        count = rand.randint(0, 1)
        temperatures = [0] * count
    else:
        temperatures = [rand.choice([0, 1, 2]) for _ in range(rand.randint(0, 2))] + [last]
    days = sorted(rand.sample(range(1, 30), len(temperatures)))
    return [f"[Note day {day}] {rand.choice(NOTES[t])}" for day, t in zip(days, temperatures)]


def _noisy(line: str, rand: random.Random) -> str:
    """Customers type fast: sometimes lower case, sometimes a swapped pair of letters."""
    if rand.random() < 0.25:
        line = line.lower()
    if rand.random() < 0.15:
        words = line.split(" ")
        i = rand.randrange(len(words))
        word = words[i]
        if len(word) > 3:
            j = rand.randrange(len(word) - 1)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        line = " ".join(words)
    return line
