"""Write the complexity evaluation set, ``bench/complexity/prompts.jsonl``, deterministically.

Every line is one request as a user would send it (an OpenAI chat body) with the
smallest tier expected to answer it well (1 = 4B, 2 = 7B, 3 = 14B, by the rule in
LABELLING.md), its category, and its split (``tune`` or ``heldout``, about 60/40,
stratified by category and label). Requests come from families of templates: each
family is one kind of task at one label, with several phrasings and slot values, so
that no single word separates the tiers (easy requests say "step by step" or "prove",
hard ones often use neither). The seed fixes the output: run it again, get the same file.

    .venv/bin/python bench/complexity/make_prompts.py
"""

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

SEED = 14
OUT = Path(__file__).with_name("prompts.jsonl")
HELDOUT_SHARE = 0.4

Family = tuple[str, int, int, list[str]]  # category, label, count, phrasings

# Slot values, drawn at random into the phrasings' {placeholders}.
SLOTS: dict[str, list[str]] = {
    "animal": ["cats", "penguins", "octopuses", "owls", "dogs", "otters", "bees", "crows"],
    "city": ["Lisbon", "Kyoto", "Montreal", "Prague", "Cape Town", "Oaxaca", "Edinburgh"],
    "country": ["Portugal", "Kenya", "Chile", "Norway", "Vietnam", "Canada", "Morocco"],
    "movie": ["Inception", "Amélie", "Spirited Away", "The Matrix", "Paddington 2", "Up"],
    "food": ["pancakes", "a lentil soup", "banana bread", "guacamole", "fried rice", "chili"],
    "lang": ["French", "Spanish", "German", "Italian", "Portuguese", "Dutch"],
    "rare_lang": ["Finnish", "Vietnamese", "Hungarian", "Tagalog", "Swahili", "Icelandic"],
    "plang": ["Python", "JavaScript", "Go", "Rust", "Java", "TypeScript", "C#"],
    "name": ["Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Priya", "Jonas", "Sofia"],
    "company": ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Northwind", "Hooli"],
    "hobby": ["running", "chess", "baking", "climbing", "painting", "learning guitar"],
    "n1": [str(n) for n in (12, 17, 23, 48, 64, 75, 96, 125, 250, 380)],
    "n2": [str(n) for n in (3, 4, 7, 8, 9, 11, 15, 19, 25, 40)],
    "pct": ["5%", "12%", "15%", "20%", "35%", "8%"],
    "days": ["two", "three", "four", "five"],
    "weeks": ["4", "6", "8", "10", "12"],
    "exam": ["the bar exam", "a calculus final", "the AWS architect exam", "a Spanish B2 test"],
    "db": ["PostgreSQL", "MySQL", "MongoDB", "Cassandra"],
    "sentence": [
        "me and him goes to the store yesterday and buyed three apple",
        "the meeting have been moved to thursday because alot of people was sick",
        "i dont think this report are ready, their is many mistake in it",
        "We was hoping you could sends us the invoice before friday",
        "Your order has shipped and it will arrive soon hopefully",
        "Please find attached the slides which I promised to you in last week",
        "can u tell the team the server is down again and we r looking at it",
        "The new policy is effective immediately for all employees of the department",
    ],
    "short_para": [
        "Our quarterly revenue grew by 8% thanks to strong sales in Europe, while costs "
        "stayed flat. The board approved a new hiring plan for the engineering team.",
        "The city council voted to extend the bike lane network by 40 kilometres over the "
        "next three years, funded partly by a new parking fee in the centre.",
        "Researchers found that people who walk for 30 minutes a day sleep better and "
        "report less stress, although the effect was smaller for older participants.",
        "The library will close for renovation from March to June. During that time books "
        "can be borrowed from the temporary branch next to the train station.",
        "A storm knocked out power to 20,000 homes on Tuesday night. Crews restored most "
        "connections by Wednesday afternoon, and schools reopened on Thursday.",
        "The theorem club meets on Fridays; this week the students will present their "
        "favourite proofs and then share pizza in the common room.",
    ],
}

SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Answer briefly.",
    "You are an expert software engineer. Be precise.",
    "You are a friendly tutor who explains things clearly.",
    "You are a helpful assistant for {company} employees. Be professional.",
    "Answer in plain English; avoid jargon.",
    "You are a senior mathematician. Be rigorous.",
]

OPENERS = ["", "", "", "Hey, ", "Hi! ", "Quick question: ", "Please ", "Can you ", "pls "]


def _article(rng: random.Random, paragraphs: int) -> str:
    """A synthetic report of ``paragraphs`` paragraphs: long-context material."""
    subjects = ["migration", "vendor", "pilot", "warehouse", "audit", "support team"]
    subjects = [f"the {s}" for s in [*subjects, "mobile app", "data pipeline", "budget"]]
    verbs = ["was delayed by", "improved by", "cost", "saved", "exceeded the plan by"]
    verbs += ["fell short by", "required", "added"]
    amounts = ["two weeks", "12%", "$40,000", "three engineers", "18 hours", "7%", "$2.1M"]
    months = ["January", "February", "March", "April", "May", "June", "July", "September"]
    out = []
    for i in range(paragraphs):
        sents = []
        for _ in range(rng.randint(4, 7)):
            sents.append(
                f"In {rng.choice(months)}, {rng.choice(subjects)} {rng.choice(verbs)} "
                f"{rng.choice(amounts)}, according to {rng.choice(SLOTS['name'])} from "
                f"{rng.choice(SLOTS['company'])}."
            )
        out.append(f"Section {i + 1}. " + " ".join(sents))
    return "\n\n".join(out)


FAMILIES: list[Family] = [
    # --- chit-chat ---------------------------------------------------------------------
    (
        "chitchat",
        1,
        22,
        [
            "hi there! how's it going?",
            "Good morning :) what should I do this weekend if it rains?",
            "Tell me a joke about {animal}.",
            "What's a cute name for a pet {animal}?",
            "I just watched {movie}, can you recommend something similar?",
            "what is the capital of {country}",
            "Give me a fun fact about {animal}!",
            "Say something encouraging, I have a long day ahead.",
            "thanks, that was really helpful!",
            "Which is heavier, a kilo of feathers or a kilo of steel?",
            "What's your favourite season and why? Just for fun.",
            "Can you explain step by step how to make a cup of tea?",
            "Do {animal} sleep a lot?",
            "Suggest three names for a book club.",
        ],
    ),
    (
        "chitchat",
        2,
        8,
        [
            "I've been feeling burned out at work for months and I'm thinking about quitting to "
            "try {hobby} professionally. What should I weigh before deciding?",
            "My friend {name} and I had a fight about money and now she won't talk to me. How "
            "could I start a conversation that doesn't make things worse?",
            "I'm moving to {city} alone next month and I'm nervous about making friends. Any "
            "thoughtful advice for the first few months?",
        ],
    ),
    # --- rewriting ---------------------------------------------------------------------
    (
        "rewriting",
        1,
        24,
        [
            'Fix the grammar: "{sentence}"',
            "Make this more polite: {sentence}",
            "Rewrite this sentence so it sounds more formal: {sentence}",
            "can you correct this? {sentence}",
            "Rephrase in simpler words: {short_para}",
            "Shorten this to one sentence: {short_para}",
            "Turn this into a bullet list:\n{short_para}",
            "Make this sound friendlier for a newsletter: {short_para}",
        ],
    ),
    (
        "rewriting",
        2,
        16,
        [
            "Rewrite the following for a non-technical audience of {company} customers. Keep every "
            "fact, keep it under 80 words, and end with a call to action:\n\n{short_para}",
            "Turn these notes into a professional email to my manager {name} asking for a "
            "deadline extension, with a clear reason and a proposed new date:\n- {sentence}\n- "
            "client feedback late\n- two people out sick",
            "Rewrite this paragraph in the voice of a 19th-century newspaper, preserving all the "
            "numbers and names:\n\n{short_para}",
            "Rewrite this product description three ways: playful, luxury, and minimalist. Each "
            "under 40 words.\n\nA reusable water bottle that keeps drinks cold for 24 hours.",
            "Edit this cover letter paragraph to be more persuasive without exaggerating, and "
            'explain each change briefly: "I am applying to {company} because I like '
            'technology and I am hard working and I have done some projects."',
        ],
    ),
    # --- summarising -------------------------------------------------------------------
    (
        "summarising",
        1,
        18,
        [
            "Summarize this in one sentence: {short_para}",
            "TL;DR please:\n{short_para}",
            "What's the main point of this? {short_para}",
            "Give me a 10-word summary: {short_para}",
        ],
    ),
    (
        "summarising",
        2,
        16,
        [
            "Summarise this report into 5 bullet points with the key figures, then list open "
            "questions:\n\n{article3}",
            "Here is a meeting transcript. Summarise decisions and action items with owners.\n\n"
            "{name}: we should ship on Friday.\nOmar: QA isn't done, two blockers remain.\n"
            "{name}: then Monday, and I'll tell {company}.\nPriya: I'll take the login bug.\n"
            "Omar: I'll finish the payment tests by Thursday.",
            "Summarize the following for an executive who has two minutes, highlighting risks:"
            "\n\n{article3}",
        ],
    ),
    (
        "summarising",
        3,
        8,
        [
            "Here are two op-eds on remote work. Summarise each one's argument, identify where "
            "they actually disagree versus talk past each other, and assess which evidence is "
            "stronger.\n\nA: {short_para}\n\nB: {short_para}",
            "Summarise this report, then critically evaluate whether its conclusions follow from "
            "the figures it gives, pointing out any internal contradictions:\n\n{article3}",
        ],
    ),
    # --- extraction --------------------------------------------------------------------
    (
        "extraction",
        1,
        18,
        [
            "Extract the email address from: 'Contact {name} at {name_l}@example.com for details.'",
            "What date is mentioned here? 'The launch is planned for 14 March at {company}.'",
            "List the names in this sentence: {name} met Kenji and Lena at the cafe.",
            "Pull out the phone number: call us on +44 20 7946 0{n1} any time",
            "Which city is mentioned? 'We flew from {city} to Rome last week.'",
        ],
    ),
    (
        "extraction",
        2,
        18,
        [
            "Extract the following fields as JSON (vendor, invoice_number, date, line_items with "
            "description, qty and unit_price, total):\n\nINVOICE #{n1}-{n2}\n{company}\nDate: "
            "2024-03-{n2}\n- Widget A x {n2} @ 4.50\n- Service fee x 1 @ {n1}.00\nTotal due: see "
            "above",
            "From this job ad, extract title, seniority, salary range, required skills and "
            "location as JSON:\n\nSenior {plang} Engineer at {company} in {city}. 5+ years, "
            "Kubernetes, SQL. Salary 90-120k. Hybrid.",
            "For each product aspect (battery, screen, price, support) give the sentiment and a "
            "quote from this review: 'Battery lasts forever but the screen scratches easily; "
            "support never answered and for the price I expected more.'",
        ],
    ),
    (
        "extraction",
        3,
        6,
        [
            "From the contract below, extract every obligation as (party, action, deadline, "
            "condition), resolve which obligations depend on others, and flag clauses that "
            "conflict.\n\n{article3}",
        ],
    ),
    # --- translation -------------------------------------------------------------------
    (
        "translation",
        1,
        20,
        [
            "Translate to {lang}: Where is the nearest train station?",
            "How do you say 'thank you very much for dinner' in {lang}?",
            "translate into {lang}: I'll be ten minutes late, sorry!",
            "What does 'bonjour, ça va?' mean in English?",
            "Translate this to English: 'Ich habe morgen keine Zeit.'",
            "{lang} for 'good luck with your exam'?",
        ],
    ),
    (
        "translation",
        2,
        16,
        [
            "Translate this technical paragraph into {lang}, keeping the code identifiers and "
            "markdown unchanged:\n\n{short_para}\n\nRun `make deploy` after setting `API_KEY`.",
            "Translate into {rare_lang}, keeping a formal register: {short_para}",
            "Translate these idioms into natural {lang} equivalents (not word for word) and "
            "explain each: 'break a leg', 'the ball is in your court', 'to cost an arm and a leg'.",
        ],
    ),
    (
        "translation",
        3,
        6,
        [
            "Translate this sonnet into {lang} preserving rhyme scheme and meter as far as "
            "possible, then explain the trade-offs you made line by line:\n\nShall I compare "
            "thee to a summer's day? Thou art more lovely and more temperate...",
            "Translate this legal clause into {rare_lang} so it remains legally equivalent, and "
            "note any concept that has no exact counterpart in that legal system: 'The Licensee "
            "shall indemnify and hold harmless the Licensor against all claims arising from...'",
        ],
    ),
    # --- code, easy ----------------------------------------------------------------------
    (
        "code_easy",
        1,
        24,
        [
            "How do I reverse a string in {plang}?",
            "Write hello world in {plang}.",
            "what does len() do in python",
            "How do I read a text file line by line in {plang}?",
            "Convert this loop into a list comprehension:\n```python\nout = []\nfor x in xs:\n"
            "    out.append(x * 2)\n```",
            "How do I check if a key exists in a dict in Python?",
            "What's the difference between == and === in JavaScript? short answer",
            "Write a function that returns the largest of three numbers in {plang}.",
            "How do I undo my last git commit?",
        ],
    ),
    (
        "code_easy",
        2,
        24,
        [
            "Write a SQL query listing each customer's total order value, from tables "
            "customers(id, name) and orders(id, customer_id, amount), highest first.",
            "Write a {plang} function that validates email addresses, plus unit tests for it.",
            "This function should return the average but crashes on empty lists. Fix it and "
            "explain:\n```python\ndef avg(xs):\n    return sum(xs) / len(xs)\n```",
            "Write a small Flask endpoint that accepts JSON with name and age, validates it and "
            "stores it in a dict.",
            "Write a bash script that finds all .log files older than 7 days and compresses them.",
            "Explain what this regex matches and give 3 examples: ^[A-Z]{{2}}\\d{{4}}$",
            "Write unit tests with pytest for a function slugify(title) that lowercases and "
            "replaces spaces with dashes.",
            "Refactor this {plang} code to remove duplication:\n```\nif a > 0: print('pos')\n"
            "if b > 0: print('pos')\nif c > 0: print('pos')\n```",
        ],
    ),
    # --- code, hard ----------------------------------------------------------------------
    (
        "code_hard",
        2,
        10,
        [
            "Implement binary search in {plang} handling duplicates (return the first match) and "
            "empty input.",
            "Write a {plang} class for a bank account with deposit, withdraw (no overdraft) and "
            "a transaction history.",
        ],
    ),
    (
        "code_hard",
        3,
        30,
        [
            "Implement a thread-safe LRU cache in {plang} with O(1) get and put, and explain how "
            "you avoid deadlocks.",
            "Write a recursive-descent parser in {plang} for arithmetic expressions with + - * / "
            "parentheses and unary minus, with correct precedence and error messages.",
            "There's a race condition somewhere in this code, find it and fix it:\n```go\nvar "
            "count int\nfunc inc(wg *sync.WaitGroup) {{ count++; wg.Done() }}\nfunc main() {{ "
            "var wg sync.WaitGroup; for i := 0; i < 1000; i++ {{ wg.Add(1); go inc(&wg) }}; "
            "wg.Wait(); fmt.Println(count) }}\n```\nThen tell me how you'd test for it.",
            "Design and implement a distributed rate limiter for an API served by 20 replicas; "
            "give the {plang} code for the core and discuss consistency versus latency.",
            "Our {db} query takes 40 seconds on 200M rows: SELECT user_id, count(*) FROM events "
            "WHERE ts > now() - interval '7 days' GROUP BY user_id HAVING count(*) > 100. How "
            "would you make it fast? Consider indexes, partitioning and pre-aggregation.",
            "Implement Dijkstra's algorithm with a binary heap in {plang}, and make it work for "
            "a graph too big to fit in memory.",
            "Write a lock-free single-producer single-consumer ring buffer in Rust and argue why "
            "the memory orderings you chose are sufficient.",
            "Implement leader election in the style of Raft in {plang}: terms, votes, randomized "
            "timeouts. Keep it runnable with three in-process nodes.",
            "My {plang} service leaks memory slowly under load, about 50MB/hour. Walk me through "
            "how to find the cause and what the usual culprits are.",
            "Write a tokenizer and evaluator for a tiny Lisp (define, lambda, if, arithmetic) in "
            "{plang}, with tail calls that don't blow the stack.",
        ],
    ),
    # --- math ----------------------------------------------------------------------------
    (
        "math",
        1,
        24,
        [
            "What is {n1} times {n2}?",
            "what's {pct} of {n1}",
            "{n1} + {n2} = ?",
            "Convert {n2} miles to kilometres.",
            "Is {n1} an even number?",
            "Round 3.14159 to two decimals.",
            "How many minutes are in {n2} hours?",
            "If a pizza is cut into {n2} slices and I eat 2, how many are left?",
        ],
    ),
    (
        "math",
        2,
        22,
        [
            "Solve for x: {n2}x + {n1} = {n1}0",
            "A train leaves at 9:00 going 80 km/h, another at 10:00 going 120 km/h on the same "
            "track. When does the second catch up?",
            "What is the probability of rolling a sum of {n2} with two dice?",
            "Find the derivative of 3x^4 - {n2}x^2 + 7.",
            "I invest ${n1}00 at {pct} compounded yearly. How much after {n2} years?",
            "Solve the system: 2x + y = {n2}, x - y = 3.",
            "A shop discounts a jacket by {pct} and then by another 10%. What's the total "
            "discount?",
        ],
    ),
    (
        "math",
        3,
        28,
        [
            "Prove that the square root of 2 is irrational.",
            "Prove that there are infinitely many primes.",
            "Show that every bounded monotone sequence of real numbers converges.",
            "Evaluate the integral of x^2 e^x from 0 to 1 and justify each step.",
            "Find all real solutions of x^4 - 5x^2 + 4 = 0 and prove there are no others.",
            "How many ways can {n2} people sit around a round table if two of them refuse to sit "
            "next to each other? Explain the counting carefully.",
            "Let A be a 3x3 matrix with eigenvalues 1, 2 and 3. What is det(A^2 - A)? Justify.",
            "Prove by induction that 1^3 + 2^3 + ... + n^3 = (n(n+1)/2)^2.",
            "Is the series sum 1/(n log n) convergent? Give a rigorous argument.",
            "Why does the fundamental theorem of calculus hold? Sketch a rigorous argument.",
            "Show that a group of order p^2 is abelian.",
        ],
    ),
    # --- planning ----------------------------------------------------------------------
    (
        "planning",
        1,
        14,
        [
            "What do I need to buy to make {food}?",
            "Make me a quick to-do list for cleaning my kitchen.",
            "Give me a packing list for a weekend trip to {city}.",
            "What should I bring to a picnic?",
        ],
    ),
    (
        "planning",
        2,
        22,
        [
            "Plan a {days}-day itinerary in {city} for someone who loves food and museums, with "
            "a budget of about 100 euros a day.",
            "Create a {weeks}-week study plan for {exam}; I can study 10 hours a week.",
            "Build me a weekly workout plan for a beginner who wants to get into {hobby}.",
            "Plan a birthday party for 15 kids aged 8, including a timeline for the day.",
            "Make a one-week vegetarian meal plan with a shopping list, under 60 dollars.",
        ],
    ),
    (
        "planning",
        3,
        16,
        [
            "We need to migrate a 4TB {db} database to a new cluster with zero downtime. Plan "
            "the migration step by step, with verification and a rollback at each stage.",
            "Plan a 6-month project to move {company}'s monolith to services with 8 engineers: "
            "milestones, dependencies, the critical path, and the top risks with mitigations.",
            "Schedule a 2-day conference: 12 talks, 3 rooms, speakers {name} and Omar can't be "
            "on the same day, keynotes need the big room, no speaker twice in a row. Give a valid "
            "schedule and explain how you checked the constraints.",
            "Our team of 5 has 9 features with these dependencies: B after A, D after B and C, F "
            "after D, H after E and F. Each takes 1-3 weeks. Plan the order and assignments to "
            "finish as early as possible and say what the critical path is.",
        ],
    ),
    # --- reasoning -----------------------------------------------------------------------
    (
        "reasoning",
        1,
        12,
        [
            "If it's raining, should I bring an umbrella?",
            "Is a tomato a fruit or a vegetable?",
            "Which is bigger, {n1} or {n2}?",
            "Why do we wear coats in winter?",
        ],
    ),
    (
        "reasoning",
        2,
        18,
        [
            "Explain why the sky is blue.",
            "What are the pros and cons of renting versus buying a home in {city}?",
            "Why do airplanes fly? Explain for a curious teenager.",
            "Explain how vaccines train the immune system.",
            "Compare electric cars and hybrids for someone who drives 50 km a day.",
            "Why did the Roman Empire decline? Give the main explanations historians propose.",
        ],
    ),
    (
        "reasoning",
        3,
        30,
        [
            "Compare Raft and Paxos: safety, liveness, how leaders are chosen, and when you'd "
            "pick each.",
            "On an island, knights always tell the truth and knaves always lie. A says 'B is a "
            "knave'. B says 'A and C are the same kind'. What is C? Show your reasoning.",
            "Estimate how many piano tuners work in {city}, stating each assumption and a range.",
            "Three boxes are labelled apples, oranges and mixed, and every label is wrong. You may "
            "pick one fruit from one box. How do you relabel all boxes?",
            "This argument claims: 'Countries with more ice cream sales have more drownings, so "
            "ice cream causes drowning.' Identify every flaw and design a study that would test "
            "the causal claim.",
            "A company's revenue rose 20% but profit fell 10%. Give the plausible causes, how "
            "you'd distinguish between them with data, and what you'd look at first.",
            "Is it ethical for a self-driving car to prioritise its passengers over pedestrians? "
            "Analyse under consequentialist and deontological views and reach a position.",
            "Why does eventual consistency allow lost updates, and how do CRDTs avoid it? Give a "
            "concrete example.",
            "If the Fed raises rates by 1%, trace the likely effects on mortgages, the dollar, "
            "emerging markets and tech stocks, over 6 to 18 months.",
        ],
    ),
    # --- long context ------------------------------------------------------------------
    (
        "long_context",
        2,
        18,
        [
            "{article6}\n\nAccording to the report above, what happened in March?",
            "Read this and tell me which companies are mentioned:\n\n{article6}",
            "{article6}\n\nSummarise the report above in five bullet points.",
            "Who is quoted most often in the following document?\n\n{article6}",
        ],
    ),
    (
        "long_context",
        3,
        18,
        [
            "{article6}\n\nReconstruct a month-by-month timeline from the report, point out "
            "any figures that contradict each other, and say which source is more reliable.",
            "Here is our project report.\n\n{article6}\n\nBased on all sections, what are the "
            "three biggest risks to next quarter, and what would you do about each? Cite the "
            "sections.",
            "{article6}\n\nCompare the first half of this report with the second half: did the "
            "outcomes improve, and what explains the difference?",
        ],
    ),
]

# Multi-turn follow-ups: the last message decides, but only with what came before.
FOLLOW_UPS: list[tuple[str, int, int, list[tuple[str, str]], list[str]]] = [
    (
        "chitchat",
        1,
        8,
        [
            (
                "Prove that the square root of 2 is irrational.",
                "Suppose sqrt(2) = p/q in lowest terms... hence both are even, a contradiction.",
            ),
            (
                "Write a thread-safe LRU cache in Go.",
                "Here is an implementation using a mutex and a doubly linked list...",
            ),
        ],
        [
            "thanks!",
            "great, that's all I needed",
            "cool, thank you so much :)",
            "perfect, have a nice day",
        ],
    ),
    (
        "code_hard",
        3,
        8,
        [
            (
                "Write a Python class for a cache.",
                "class Cache:\n    def __init__(self): "
                "self.d = {}\n    def get(self, k): return self.d.get(k)",
            ),
            ("Write a queue in C.", "Here is a simple array-backed queue with head and tail..."),
        ],
        [
            "Now make it lock-free and safe for many concurrent writers, and explain the "
            "memory ordering.",
            "ok now make it distributed across several machines with consistent hashing and "
            "handle node failures",
            "Can you make it thread-safe with O(1) eviction and prove it has no deadlock?",
        ],
    ),
    (
        "math",
        3,
        8,
        [
            ("What is 2 + 2?", "4."),
            ("Is 7 prime?", "Yes, 7 is prime."),
        ],
        [
            "Now prove that there is no largest prime.",
            "Ok, then show me rigorously why every integer above 1 factors uniquely into primes.",
            "and why is the sum of the reciprocals of the primes divergent?",
        ],
    ),
    (
        "rewriting",
        1,
        8,
        [
            (
                "Write a short thank-you note to my colleague.",
                "Thank you so much for your help "
                "with the launch, I couldn't have done it without you!",
            ),
            ("Give me a subject line for a meeting invite.", "Quarterly planning sync"),
        ],
        [
            "make it a bit shorter",
            "more casual please",
            "can you add an emoji?",
            "translate that to {lang}",
        ],
    ),
    (
        "reasoning",
        2,
        6,
        [
            (
                "What's the difference between a virus and a bacterium?",
                "Bacteria are living cells; viruses need a host cell to replicate...",
            ),
        ],
        [
            "So why don't antibiotics work on viruses?",
            "Then why do doctors sometimes give antibiotics when you have the flu?",
        ],
    ),
]


def _fill(template: str, rng: random.Random) -> str:
    values: dict[str, Any] = {k: rng.choice(v) for k, v in SLOTS.items()}
    values["name_l"] = values["name"].lower()
    values["company"] = rng.choice(SLOTS["company"])
    if "{article3}" in template:
        values["article3"] = _article(rng, 3)
    if "{article6}" in template:
        values["article6"] = _article(rng, rng.randint(6, 10))
    return template.format(**values)


def _style(text: str, rng: random.Random) -> str:
    """How people actually type: an opener, sometimes lowercase, sometimes no final stop."""
    if len(text) < 400 and rng.random() < 0.3:
        opener = rng.choice(OPENERS)
        if opener:
            text = opener + text[0].lower() + text[1:]
    if len(text) < 300 and rng.random() < 0.15:
        text = text.lower()
    if text.endswith(".") and rng.random() < 0.2:
        text = text[:-1]
    return text


def _max_tokens(label: int, rng: random.Random) -> int | None:
    # Most clients never set it; those that do pick loosely by the task's size.
    if rng.random() >= 0.2:
        return None
    choices = {1: [64, 128, 256, 512, 1024], 2: [256, 512, 1024, 2048], 3: [512, 1024, 4096]}
    return rng.choice(choices[label])


def _body(messages: list[dict[str, str]], label: int, rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.25:
        system = _fill(rng.choice(SYSTEMS), rng)
        messages = [{"role": "system", "content": system}, *messages]
    body: dict[str, Any] = {"model": "auto", "messages": messages}
    max_tokens = _max_tokens(label, rng)
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def generate(seed: int = SEED) -> list[dict[str, Any]]:
    """Every request of the set, with category, label and split."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for category, label, count, phrasings in FAMILIES:
        made = tries = 0
        while made < count and tries < count * 20:
            tries += 1
            text = _style(_fill(rng.choice(phrasings), rng), rng)
            if text in seen:
                continue
            seen.add(text)
            messages = [{"role": "user", "content": text}]
            if rng.random() < 0.12:  # an unrelated earlier exchange
                messages = [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "Hello! How can I help you today?"},
                    *messages,
                ]
            rows.append({"category": category, "label": label,
                         "body": _body(messages, label, rng)})  # fmt: skip
            made += 1
    for category, label, count, history, lasts in FOLLOW_UPS:
        made = tries = 0
        while made < count and tries < count * 20:
            tries += 1
            user, assistant = rng.choice(history)
            last = _style(_fill(rng.choice(lasts), rng), rng)
            key = user + "\x00" + last
            if key in seen:
                continue
            seen.add(key)
            messages = [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
                {"role": "user", "content": last},
            ]
            rows.append({"category": category, "label": label,
                         "body": _body(messages, label, rng)})  # fmt: skip
            made += 1
    _split(rows, rng)
    for i, row in enumerate(rows):
        row["id"] = f"{row['category']}-{i:04d}"
    return rows


def _split(rows: list[dict[str, Any]], rng: random.Random) -> None:
    """About 40% of each (category, label) stratum held out, drawn at random."""
    strata: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        strata[(row["category"], row["label"])].append(row)
    for members in strata.values():
        rng.shuffle(members)
        held = round(len(members) * HELDOUT_SHARE)
        for i, row in enumerate(members):
            row["split"] = "heldout" if i < held else "tune"


def main() -> None:
    rows = generate()
    with OUT.open("w", encoding="utf-8") as f:
        for row in rows:
            ordered = {k: row[k] for k in ("id", "category", "label", "split", "body")}
            f.write(json.dumps(ordered, ensure_ascii=False) + "\n")
    print(f"{len(rows)} requests written to {OUT}")


if __name__ == "__main__":
    main()
