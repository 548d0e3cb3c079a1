#!/usr/bin/env python3
"""make_demo_model.py - build the bundled demo language model (demo/model/) and corpus
(demo/stories.jsonl) from nothing: no downloads.

  python3 demo/make_demo_model.py [--steps N] [--out DIR] [--threads N] [--quick]

1. Writes a corpus of simple stories (TinyStories-like) from templates: a cast of 30 named
   children (12 "she", 12 "he", 6 "they", each always with the same pronouns), family members,
   pets, places, objects, feelings, colours and numbers; dialogue in double quotes, questions
   and exclamations; four or five paragraphs per story (14 plots).  Every story is its own document.
   The first N_SHIPPED stories are written to demo/stories.jsonl ({"text": ...} per line) and
   are the held-out set: the model never trains on them.  The training stories are generated
   again on every run (same seed, same text), never stored.
2. Trains a GPT-2 style byte-level BPE tokenizer with HF tokenizers (ByteLevel pre-tokenizer,
   GPT-2's regex, no prefix space; 2047 tokens including the 256 byte symbols, then
   "<|endoftext|>" as the last id, as in GPT-2) and saves tokenizer.json, vocab.json and
   merges.txt ("#version: 0.2"); checks that transformers' GPT2TokenizerFast (from tokenizer.json,
   and from vocab.json + merges.txt alone) and a copy of OpenAI's encoder.py (vocab.json +
   merges.txt) encode 200 held-out lines, and two with "<|endoftext|>", exactly as tokenizers does.
3. Trains a 2-layer GPT-Neo (transformers.GPTNeoForCausalLM: width 128, 4 heads, MLP 512,
   global then local attention with a 64-token window, 128 positions, gelu_new, tied
   embeddings) on the training stories: documents joined with "<|endoftext|>", cut into
   127-token pieces each preceded by "<|endoftext|>" as BOS (TransformerLens's
   tokenize_and_concatenate), AdamW, warm-up then cosine decay.  Prints the train and held-out
   loss and greedy samples, and saves the model (float32 safetensors) with its tokenizer files.

Seeded; on the CPU with torch.use_deterministic_algorithms(True), a rerun with the same
versions and thread count gives the same files.  About 20 minutes on 2 idle CPU cores (0.55 s a
training step); --quick (20 steps, into a temporary folder unless --out is given) checks the
plumbing in under a minute.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

SEED = 1234
N_SHIPPED = 2000          # stories in demo/stories.jsonl (held out from training)
N_TRAIN = 14000           # stories generated for training (not stored)
VOCAB_SIZE = 2048         # including the 256 byte symbols and <|endoftext|>
EOT = "<|endoftext|>"
N_CTX = 128

HERE = os.path.dirname(os.path.abspath(__file__))

# --------------------------------------------------------------------------------------------
# The cast and the world
# --------------------------------------------------------------------------------------------

SHE = ["Lily", "Mia", "Emma", "Sara", "Anna", "Lucy", "Zoe", "Ruby", "Nora", "Ella", "Rosa",
       "Maya"]
HE = ["Tom", "Ben", "Max", "Leo", "Jack", "Omar", "Finn", "Hugo", "Theo", "Noah", "Ravi", "Sam"]
THEY = ["Alex", "Robin", "Kai", "Jordan", "Riley", "Quinn"]


class Who:
    """A character (or a pet): a name and pronouns that always agree."""

    def __init__(self, name, pron):
        self.name = name
        self.pron = pron
        if pron == "she":
            he, him, his, hers,self_ = "she", "her", "her", "hers", "herself"
        elif pron == "he":
            he, him, his, hers, self_ = "he", "him", "his", "his", "himself"
        elif pron == "it":
            he, him, his, hers, self_ = "it", "it", "its", "its", "itself"
        else:
            he, him, his, hers, self_ = "they", "them", "their", "theirs", "themselves"
        plural = pron == "they"
        self.he, self.him, self.his, self.hers, self.self = he, him, his, hers, self_
        self.He, self.His = he.capitalize(), his.capitalize()
        self.was = "were" if plural else "was"
        setattr(self, "is", "are" if plural else "is")   # a keyword: "{a.is}" in templates
        self.has = "have" if plural else "has"
        self.does = "do" if plural else "does"
        self.s = "" if plural else "s"          # present-tense verb ending: "she likes", "they like"

    def __str__(self):
        return self.name

    def __format__(self, spec):
        return format(self.name, spec)


CAST = [Who(n, "she") for n in SHE] + [Who(n, "he") for n in HE] + [Who(n, "they") for n in THEY]

# family members: (word, pronoun)
FAMILY = [("Mom", "she"), ("Dad", "he"), ("Grandma", "she"), ("Grandpa", "he"),
          ("Aunt May", "she"), ("Uncle Bob", "he")]

# pets: (kind, names)
PETS = [("dog", ["Spot", "Buddy", "Rex", "Bella", "Rocky", "Daisy"]),
        ("cat", ["Whiskers", "Tiger", "Mittens", "Luna", "Socks", "Pumpkin"]),
        ("bunny", ["Fluffy", "Hops", "Snow", "Clover", "Cotton"]),
        ("fish", ["Bubbles", "Goldie", "Finny", "Splash"]),
        ("bird", ["Tweety", "Sunny", "Kiwi", "Pepper"]),
        ("hamster", ["Nibbles", "Peanut", "Biscuit"]),
        ("turtle", ["Shelly", "Speedy", "Pebble"])]

PLACES = ["the park", "the beach", "the farm", "the zoo", "the forest", "the garden",
          "the lake", "the library", "the market", "the playground", "the hill", "school",
          "the river", "the museum", "the pond", "the bakery", "the toy shop", "the meadow",
          "the castle", "the field"]

HOMES = ["a small house", "a big yellow house", "a little town", "a house by the sea",
         "a busy city", "a quiet village", "a farm", "a house near the woods", "a blue house",
         "a tall white house", "a little cabin in the hills", "a red house on a hill",
         "an old farm house", "a cozy home", "a green house with a garden"]

# objects: (singular, plural)
OBJECTS = [("ball", "balls"), ("kite", "kites"), ("teddy bear", "teddy bears"), ("hat", "hats"),
           ("book", "books"), ("toy car", "toy cars"), ("doll", "dolls"), ("red ball", "red balls"),
           ("shell", "shells"), ("stone", "stones"), ("crayon", "crayons"), ("box", "boxes"),
           ("key", "keys"), ("cup", "cups"), ("boat", "boats"), ("drum", "drums"),
           ("robot", "robots"), ("ring", "rings"), ("balloon", "balloons"), ("map", "maps"),
           ("block", "blocks"), ("train", "trains"), ("sock", "socks"), ("spoon", "spoons"),
           ("puzzle", "puzzles"), ("whistle", "whistles"), ("scarf", "scarves"),
           ("bucket", "buckets"), ("umbrella", "umbrellas"), ("flag", "flags"), ("bell", "bells"),
           ("marble", "marbles"), ("feather", "feathers"), ("jar", "jars"), ("basket", "baskets"),
           ("lamp", "lamps"), ("blanket", "blankets"), ("pencil", "pencils"), ("button", "buttons"),
           ("star", "stars"), ("coin", "coins"), ("rope", "ropes"), ("bottle", "bottles")]

FOODS = [("apple", "apples"), ("cookie", "cookies"), ("cake", "cakes"), ("banana", "bananas"),
         ("sandwich", "sandwiches"), ("cupcake", "cupcakes"), ("pear", "pears"),
         ("orange", "oranges"), ("candy", "candies"), ("muffin", "muffins"),
         ("strawberry", "strawberries"), ("carrot", "carrots"), ("grape", "grapes"),
         ("peach", "peaches"), ("pancake", "pancakes"), ("plum", "plums"), ("lemon", "lemons"),
         ("pie", "pies"), ("cherry", "cherries"), ("cracker", "crackers"), ("donut", "donuts"),
         ("egg", "eggs"), ("potato", "potatoes"), ("tomato", "tomatoes")]

ANIMALS = [("bird", "birds"), ("puppy", "puppies"), ("kitten", "kittens"), ("frog", "frogs"),
           ("duck", "ducks"), ("rabbit", "rabbits"), ("turtle", "turtles"), ("squirrel", "squirrels"),
           ("butterfly", "butterflies"), ("cow", "cows"), ("goat", "goats"), ("fox", "foxes"),
           ("owl", "owls"), ("mouse", "mice"), ("bee", "bees"), ("fish", "fish"),
           ("lion", "lions"), ("elephant", "elephants"), ("monkey", "monkeys"),
           ("horse", "horses"), ("pig", "pigs"), ("sheep", "sheep"), ("snail", "snails"),
           ("ant", "ants"), ("dolphin", "dolphins"), ("penguin", "penguins"), ("bear", "bears"),
           ("deer", "deer"), ("hen", "hens"), ("crab", "crabs"), ("ladybug", "ladybugs"),
           ("zebra", "zebras"), ("giraffe", "giraffes"), ("seal", "seals"), ("swan", "swans")]

COLORS = ["red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "black",
          "brown", "gold", "silver", "gray"]

SIZES = ["big", "small", "little", "tiny", "huge", "cute", "funny", "fast", "fluffy", "pretty",
         "tall", "strong", "quick", "lovely", "sleepy", "noisy", "beautiful", "wild"]

KIDS = ["girl", "boy", "child"]       # by pronoun: she, he, they

HAPPY = ["happy", "glad", "excited", "proud", "joyful", "cheerful", "thankful", "delighted"]
SAD = ["sad", "upset", "worried", "scared", "lonely", "angry", "grumpy", "nervous", "tired",
       "confused", "frustrated"]
TRAITS = ["kind", "brave", "curious", "funny", "shy", "clever", "friendly", "gentle", "silly",
          "busy", "quiet", "cheerful", "smart", "honest", "helpful", "playful", "polite",
          "careful", "happy", "lively"]

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve"]

WEATHER = ["sunny", "rainy", "windy", "snowy", "cloudy", "warm", "cold", "bright"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
GAMES = ["tag", "hide and seek", "catch", "a game of cards", "pretend", "ball", "jump rope",
         "a board game", "hopscotch", "pirates"]
SONGS = ["a happy song", "a silly song", "a song about the sea", "a song about stars",
         "a song about a frog", "a sleepy song"]
INSTRUMENTS = ["drum", "piano", "flute", "guitar", "violin", "trumpet", "bell"]
SEEDS = [("sunflower", "sunflowers"), ("carrot", "carrots"), ("tomato", "tomatoes"),
         ("bean", "beans"), ("pumpkin", "pumpkins"), ("rose", "roses"), ("daisy", "daisies")]


# --------------------------------------------------------------------------------------------
# Stories
# --------------------------------------------------------------------------------------------

class Story:
    """Helpers bound to one random generator."""

    def __init__(self, rng):
        self.r = rng

    def pick(self, xs):
        return self.r.choice(xs)

    def chance(self, p):
        return self.r.random() < p

    def cast(self, n):
        return self.r.sample(CAST, n)

    def family(self):
        name, pron = self.pick(FAMILY)
        return Who(name, pron)

    def pet(self):
        kind, names = self.pick(PETS)
        pet = Who(self.pick(names), "it")
        pet.kind = kind
        return pet

    def num(self, lo, hi):
        """A number written as a word or as digits."""
        n = self.r.randint(lo, hi)
        return n, (NUMBER_WORDS[n] if n < len(NUMBER_WORDS) and self.chance(0.6) else str(n))

    def kid(self, a):
        return KIDS[["she", "he", "they"].index(a.pron)]

    def fmt(self, template, **kw):
        return template.format(**kw)

    def choose(self, options, **kw):
        return self.pick(options).format(**kw)

    # ---- shared parts ---------------------------------------------------------------------

    def opening(self, a):
        trait = self.pick(TRAITS)
        kid = self.kid(a)
        age, age_s = self.num(3, 9)
        home = self.pick(HOMES)
        lines = [
            "Once upon a time, there was a {trait} {kid} named {a}.",
            "Once upon a time, in {home}, there lived a {trait} {kid} named {a}.",
            "There was once a {trait} {kid} called {a}.",
            "{a} was a {trait} {kid} who lived in {home}.",
            "One {weather} day, a {trait} {kid} named {a} woke up early.",
            "{a} was {age_s} years old.",
        ]
        first = self.choose(lines, trait=trait, kid=kid, a=a, home=home, age_s=age_s,
                            weather=self.pick(WEATHER))
        more = [
            "{a.He} {a.was} {age_s} years old.",
            "{a.He} lived in {home} with {a.his} family.",
            "{a.He} loved to play outside.",
            "{a.He} liked to sing and dance.",
            "{a.He} had a {pet_kind} named {pet}, and {a.he} loved it very much.",
            "Everyone said {a.he} {a.was} very {trait}.",
            "{a.His} favorite color {c_is} {color}.",
        ]
        if "years old" in first:
            more = more[1:]
        pet = self.pet()
        second = self.choose(more, a=a, age_s=age_s, home=home, trait=trait,
                             color=self.pick(COLORS), c_is="was", pet=pet, pet_kind=pet.kind)
        return first + " " + second

    def ending(self, a, b=None):
        they = "{a} and {b}".format(a=a, b=b) if b else str(a)
        ends = [
            "From that day on, {who} always remembered that day.",
            "It was the best day ever.",
            "{who} went home, tired and happy.",
            "That night, {who} had sweet dreams.",
            "And they all lived happily ever after.",
            "The end.",
        ]
        out = self.choose(ends, who=they)
        if self.chance(0.3) and not out.startswith("The end"):
            out += " The end."
        return out

    # ---- plots ------------------------------------------------------------------------------

    def lost_item(self):
        a, b = self.cast(2)
        obj, _ = self.pick(OBJECTS)
        color = self.pick(COLORS)
        place = self.pick(PLACES)
        sad = self.pick(SAD)
        p = [self.opening(a) + " " + self.fmt(
            "{a.He} had a {color} {obj} that {a.he} loved very much.", a=a, color=color, obj=obj)]
        p.append(self.choose([
            "One day, {a} took the {obj} to {place}. {a.He} played with it all morning. When it was time to go home, the {obj} was gone!",
            "One day, {a} went to {place} with {a.his} {obj}. Later, {a.he} looked down and the {obj} was not there.",
            "On {day}, {a} could not find {a.his} {obj} anywhere. {a.He} looked in {a.his} room, but it was not there.",
        ], a=a, obj=obj, place=place, day=self.pick(DAYS)))
        p.append(self.choose([
            "{a} felt {sad}. \"Where is my {obj}?\" {a.he} cried. {b} saw {a.him} and came over. \"What is wrong, {a}?\" {b} asked.",
            "\"Oh no!\" said {a}. \"My {obj} is lost!\" {a.He} {a.was} very {sad}. {a.His} friend {b} heard {a.him} and ran to help.",
            "{a} sat down and started to cry. Just then, {a.his} friend {b} walked by. \"Why are you {sad}?\" asked {b}.",
        ], a=a, b=b, obj=obj, sad=sad))
        n, n_s = self.num(2, 6)
        spots = self.r.sample(["under the bench", "behind a tree", "in the grass", "near the gate",
                               "under a big leaf", "inside a box", "by the water", "under the bed",
                               "behind the door", "in the sand"], 3)
        p.append(self.choose([
            "\"I will help you look,\" said {b}. They looked {s0}. They looked {s1}. Then {b} looked {s2}. \"I found it!\" {b.he} shouted.",
            "{b} said, \"Don't worry, {a}. We can find it together.\" They looked {s0} and {s1}. After {n_s} minutes, {a} saw something {color} {s2}. It was the {obj}!",
            "\"Let's look {s0},\" said {b}. It was not there. \"Maybe it is {s1}?\" asked {a}. It was not there either. At last, {b} found it {s2}.",
        ], a=a, b=b, s0=spots[0], s1=spots[1], s2=spots[2], n_s=n_s, color=color, obj=obj))
        p.append(self.choose([
            "{a} hugged {b}. \"Thank you, {b}! You are a good friend.\" Later {a} told {a.his} mom, \"{b} {b.is} the best. {b.He} {b.does} not give up!\" {b} smiled. {b.He} {b.was} {happy} that {b.he} could help. " + self.ending(a, b),
            "{a} was so {happy}! {a.He} gave {b} a big hug and said, \"Thank you!\" " + self.ending(a, b),
            "\"Thank you!\" said {a}. {a.He} held {a.his} {obj} tight. Now {a.he} always keep{a.s} it safe. " + self.ending(a),
        ], a=a, b=b, obj=obj, happy=self.pick(HAPPY)))
        return p

    def sharing(self):
        a, b = self.cast(2)
        food, foods = self.pick(FOODS)
        n, n_s = self.num(3, 10)
        p = [self.opening(a)]
        p.append(self.choose([
            "One day, {a.his} {fam} gave {a.him} {n_s} {foods}. {a} counted them: {count}. {a.He} {a.was} very {happy}.",
            "At lunch, {a} had {n_s} {foods} in {a.his} bag. \"Yum!\" said {a}. \"I love {foods}!\"",
            "On {day}, {a} found a box with {n_s} {foods} inside. {a.He} counted them one by one: {count}.",
        ], a=a, fam=self.pick(["mom", "dad", "grandma", "grandpa", "aunt", "uncle"]), n_s=n_s,
            foods=foods, count=", ".join(str(i) for i in range(1, n + 1)), happy=self.pick(HAPPY),
            day=self.pick(DAYS)))
        p.append(self.choose([
            "Then {b} came by. {b.He} did not have any {foods}. \"Can I have one, please?\" asked {b}. {a} did not want to share. \"No, they are mine!\" {a.he} said.",
            "{b} sat next to {a}. {b.His} tummy made a loud noise. \"I am so hungry,\" {b.he} said. {a} looked at {a.his} {foods} and then at {b}.",
            "Soon {b} walked over. \"Wow, you have {n_s} {foods}!\" said {b}. \"I have none.\" {b.He} looked {sad}.",
        ], a=a, b=b, foods=foods, n_s=n_s, sad=self.pick(SAD)))
        half = n // 2
        p.append(self.choose([
            "{a} thought about it. {a.He} remembered what {a.his} {fam} always said: \"It is nice to share.\" So {a} gave {b} {half} {foods}.",
            "{a} felt a little {sad}. Then {a.he} smiled and gave {b} one {food}. \"Here you go,\" said {a}. \"Friends share!\"",
            "After a while, {a} said, \"Let's share them. You can have {half_s}.\" {b} clapped {b.his} hands. \"Really? Thank you!\"",
        ], a=a, b=b, fam=self.pick(["mom", "dad", "grandma", "teacher"]), half=half,
            half_s=NUMBER_WORDS[half] if half < len(NUMBER_WORDS) else str(half),
            foods=foods if half != 1 else food, food=food, sad=self.pick(SAD)))
        p.append(self.choose([
            "{a} and {b} ate the {foods} together under a tree. Sharing made {a} feel warm inside. " + self.ending(a, b),
            "{b} was very {happy}. {b.He} gave {a} a {color} {obj} to say thank you. Now they were best friends. " + self.ending(a, b),
            "The {foods} tasted even better when they shared them. {a} learned that sharing is fun. " + self.ending(a, b),
        ], a=a, b=b, foods=foods, happy=self.pick(HAPPY), color=self.pick(COLORS),
            obj=self.pick(OBJECTS)[0]))
        return p

    def birthday(self):
        a, b, c = self.cast(3)
        age, age_s = self.num(4, 9)
        p = [self.choose([
            "Today was {a}'s birthday! {a.He} {a.was} {age_s} years old.",
            "It was a {weather} {day}, and it was {a}'s birthday. {a} was turning {age_s}.",
            "{a} woke up and jumped out of bed. \"It's my birthday!\" {a.he} shouted. \"I am {age_s} today!\"",
        ], a=a, age_s=age_s, weather=self.pick(WEATHER), day=self.pick(DAYS))]
        fam = self.family()
        p.append(self.choose([
            "{fam} made a big {color} cake with {age} candles on top. \"Make a wish, {a}!\" said {fam}. {a} closed {a.his} eyes and blew out all {age_s} candles.",
            "{fam} hung {color} balloons all over the house. There were {n} balloons! {a} counted them twice to be sure.",
            "{a.His} friends {b} and {c} came to the party. {b} brought a {obj}, and {c} brought a {color} {obj2}.",
        ], a=a, b=b, c=c, fam=fam, age=age, age_s=age_s, color=self.pick(COLORS),
            n=self.r.randint(3, 12), obj=self.pick(OBJECTS)[0], obj2=self.pick(OBJECTS)[0]))
        p.append(self.choose([
            "{b} gave {a} a present. It was a {obj}! \"Do you like it?\" asked {b}. \"I love it!\" said {a}.",
            "They played {game} in the garden. {c} was very good at it. {c.He} laughed so much that {c.he} fell down!",
            "\"Happy birthday, {a}!\" sang {b} and {c}. {a} smiled a big smile. {a.He} felt so {happy}.",
        ], a=a, b=b, c=c, obj=self.pick(OBJECTS)[0], game=self.pick(GAMES), happy=self.pick(HAPPY)))
        if self.chance(0.5):
            p.append(self.choose([
                "Then {c} looked {sad}. \"I forgot to bring a present,\" {c.he} said. {a} shook {a.his} head. \"You came to my party. That is the best present!\"",
                "After the cake, {b} spilled juice on {b.his} shirt. \"Oops!\" said {b}. Everyone laughed, and {b} laughed too.",
                "Later, they ate {n} slices of cake. {c} ate two slices and said, \"I am so full!\"",
            ], a=a, b=b, c=c, sad=self.pick(SAD), n=self.r.randint(3, 9)))
        p.append(self.choose([
            "When the party was over, {a} said, \"Thank you for coming!\" It was the best birthday ever.",
            "That night, {a} hugged {fam}. \"Thank you for my party,\" {a.he} whispered. Then {a.he} fell asleep with a big smile.",
        ], a=a, fam=fam) + (" The end." if self.chance(0.3) else ""))
        return p

    def animal_help(self):
        a, b = self.cast(2)
        animal, _ = self.pick(ANIMALS)
        place = self.pick(PLACES)
        fam = self.family()
        p = [self.opening(a)]
        p.append(self.choose([
            "One day, {a} and {b} went to {place}. They heard a small sound. It was a little {animal}! The {animal} was stuck {where}.",
            "On {day} morning, {a} was walking to {place} with {b}. Suddenly, {b} stopped. \"Look!\" {b.he} said. \"A {animal}!\" It was stuck {where}.",
        ], a=a, b=b, place=place, animal=animal, where=self.pick(
            ["in a bush", "in the mud", "in a tree", "under a fence", "in a hole", "in some string"]),
            day=self.pick(DAYS)))
        p.append(self.choose([
            "\"The poor {animal} is {sad},\" said {a}. \"We have to help it!\" {b} nodded. \"But how?\" {b.he} asked.",
            "{a} wanted to help, but {a.he} {a.was} a little {sad}. \"What if it bites?\" {a.he} asked. {b} said, \"Let's be gentle.\"",
        ], a=a, b=b, animal=animal, sad=self.pick(SAD)))
        p.append(self.choose([
            "{a} ran home and got {fam}. {fam} came with a soft blanket. {fam.He} lifted the {animal} out very slowly.",
            "{b} held the branch, and {a} reached in with {a.his} hands. Very slowly, {a.he} helped the {animal} out.",
            "They asked {fam} for help. {fam} said, \"Good job for telling me.\" Together, the three of them set the {animal} free.",
        ], a=a, b=b, fam=fam, animal=animal))
        p.append(self.choose([
            "The {animal} looked at {a} and {b}. Then it ran away into the {end_place}. \"Bye, little {animal}!\" they called. " + self.ending(a, b),
            "The {animal} was free! {a} and {b} cheered. \"We did it!\" said {a}. {a} and {b} felt very {happy}. " + self.ending(a, b),
            "{a} was so proud of {a.self}. {b} was proud too. Helping the {animal} made them both feel {happy}. " + self.ending(a, b),
        ], a=a, b=b, animal=animal, happy=self.pick(HAPPY), end_place=self.pick(["woods", "grass", "sky", "field"])))
        return p

    def rainy_day(self):
        a = self.pick(CAST)
        fam = self.family()
        pet = self.pet()
        p = [self.opening(a)]
        p.append(self.choose([
            "One morning, {a} looked out the window. It was raining! \"Oh no,\" said {a}. \"I wanted to go to {place}.\"",
            "It rained all day on {day}. {a} could not go outside. {a.He} sat by the window and felt {sad}.",
        ], a=a, place=self.pick(PLACES), day=self.pick(DAYS), sad=self.pick(SAD)))
        p.append(self.choose([
            "{fam} had an idea. \"Let's build a fort!\" {fam.he} said. They used {n} pillows and a big {color} blanket.",
            "{a.His} {kind}, {pet}, came and sat next to {a.him}. {pet} wagged its tail. \"Do you want to play?\" asked {a}.",
            "\"What can I do?\" {a} asked {fam}. \"You can draw a picture,\" said {fam}. So {a} got {n} crayons and drew a {color} {animal}.",
        ], a=a, fam=fam, pet=pet, kind=pet.kind, n=self.r.randint(3, 9), color=self.pick(COLORS),
            animal=self.pick(ANIMALS)[0]))
        p.append(self.choose([
            "They played inside all afternoon. {a} counted the raindrops on the window: one, two, three, four, five. \"Too many!\" {a.he} laughed.",
            "{a} and {a.his} {kind}, {pet}, played with a {obj}. {pet} ran after it again and again. {a} laughed and laughed.",
            "Then {fam} made hot soup. {a} ate it all. \"This is the best soup!\" said {a}.",
        ], a=a, pet=pet, kind=pet.kind, fam=fam, obj=self.pick(OBJECTS)[0]))
        p.append(self.choose([
            "At last, the rain stopped. The sun came out, and there was a rainbow in the sky! \"Look!\" said {a}. \"It has so many colors!\" " + self.ending(a),
            "When the rain stopped, {a} was not {sad} anymore. A rainy day can be fun too. " + self.ending(a),
        ], a=a, sad=self.pick(SAD)))
        return p

    def race(self):
        a, b = self.cast(2)
        goal = self.pick(["the big tree", "the red gate", "the old bench", "the pond", "the top of the hill"])
        p = [self.opening(a) + " " + self.fmt("{a.His} best friend was {b}.", a=a, b=b)]
        p.append(self.choose([
            "One day, {b} said, \"Let's race to {goal}!\" \"Okay!\" said {a}. \"Ready, set, go!\" They ran as fast as they could.",
            "At {place}, {a} said, \"I bet I can run faster than you!\" \"No way!\" said {b}. \"Let's race to {goal}!\"",
        ], a=a, b=b, goal=goal, place=self.pick(["the park", "the beach", "the playground", "the farm", "the garden"])))
        a_falls = self.chance(0.5)
        p.append(self.choose([
            "{a} was in front. But then {a.he} tripped on a rock and fell down. \"Ouch!\" {a.he} cried. {a.His} knee hurt.",
        ] if a_falls else [
            "{b} was faster. \"{b.He} {b.is} so fast!\" thought {a}. But {b.he} did not see the puddle. Splash! {b} fell into the water. {b.He} {b.was} all wet!",
        ], a=a, b=b))
        p.append(self.choose([
            "{b} stopped running. {b.He} went back to help {b.his} friend. \"Are you okay?\" {b.he} asked. {b} helped {a} stand up.",
            "{b} turned around. \"{a} {a.is} hurt!\" {b.he} said, and ran back. {b.He} gave {a} {b.his} hand.",
        ] if a_falls else [
            "{a} stopped and went back. \"Are you hurt?\" asked {a}. {b} shook {b.his} head and laughed. \"I am just wet!\"",
        ], a=a, b=b))
        p.append(self.choose([
            "Together, they walked to {goal}. \"We both win,\" said {a}. Being a good friend is better than winning. " + self.ending(a, b),
            "They held hands and ran the last {n_s} steps together. \"It's a tie!\" they shouted. " + self.ending(a, b),
        ], a=a, b=b, goal=goal, n_s=self.num(5, 12)[1]))
        return p

    def baking(self):
        a = self.pick(CAST)
        fam = self.family()
        c = self.pick([x for x in CAST if x is not a])
        food, foods = self.pick([("cookie", "cookies"), ("cake", "cakes"), ("muffin", "muffins"),
                                 ("cupcake", "cupcakes"), ("pie", "pies")])
        n, n_s = self.num(2, 4)
        m, m_s = self.num(6, 12)
        p = [self.opening(a)]
        p.append(self.choose([
            "On {day}, {fam} said, \"Do you want to bake {foods} with me?\" \"Yes, please!\" said {a}.",
            "{a} and {fam} were in the kitchen. \"Today we will make {foods},\" said {fam}. {a} jumped up and down.",
        ], a=a, fam=fam, day=self.pick(DAYS), foods=foods))
        p.append(self.choose([
            "First, they put {n_s} cups of flour in a big bowl. Then they added sugar, milk and {eggs} eggs. {a} mixed it all with a spoon.",
            "{a} helped {fam} with everything. {a.He} poured the milk and cracked {eggs} eggs. \"Good job!\" said {fam}.",
        ], a=a, fam=fam, n_s=n_s, eggs=self.pick(["two", "three", "2", "3"])))
        p.append(self.choose([
            "They made {m_s} {foods}. But one {food} was burnt! \"Oh no!\" said {a}. {fam} laughed. \"That is okay. We still have {left} more.\"",
            "The kitchen smelled so good. When the {foods} were ready, there were {m_s} of them. {a} counted them twice.",
        ], a=a, fam=fam, m_s=m_s, food=food, foods=foods, left=m - 1))
        p.append(self.choose([
            "{a} took some {foods} to {a.his} friend {c}. \"Did you make these?\" asked {c}. \"Yes!\" said {a}. {c} ate one and smiled. " + self.ending(a, c),
            "{a} gave one {food} to {c}, who lived next door. {c} said, \"Thank you! This is yummy!\" " + self.ending(a),
            "That evening, the whole family ate {foods}. {a} was proud, because {a.he} had helped. " + self.ending(a),
        ], a=a, c=c, food=food, foods=foods))
        return p

    def new_friend(self):
        a, b = self.cast(2)
        place = self.pick(["school", "the park", "the playground", "the library", "the beach"])
        p = [self.choose([
            "{a} was new in town. On the first day at {place}, {a.he} did not know anyone. {a.He} felt very {sad}.",
            "It was {a}'s first day at {place}. {a.He} stood by the wall and looked at the other children. {a.He} {a.was} {sad}.",
        ], a=a, place=place, sad=self.pick(["shy", "nervous", "lonely", "scared"]))]
        p.append(self.choose([
            "Then a {kid} came over. \"Hi! I am {b},\" {b.he} said. \"What is your name?\" \"I am {a},\" said {a}.",
            "{b} saw {a} standing alone. {b.He} walked over and said, \"Hello! Do you want to play {game} with me?\"",
        ], a=a, b=b, kid=self.kid(b), game=self.pick(GAMES)))
        p.append(self.choose([
            "\"How old are you?\" asked {b}. \"I am {age_s},\" said {a}. \"Me too!\" said {b}. They both laughed.",
            "\"Do you like {animals}?\" asked {a}. \"Yes! I have {n_s} at home,\" said {b}. \"Wow!\" said {a}.",
            "They played {game} until it was time to go. {a} was not {sad} anymore. {a.He} {a.was} {happy}.",
        ], a=a, b=b, age_s=self.num(4, 9)[1], animals=self.pick(ANIMALS)[1], n_s=self.num(2, 5)[1],
            game=self.pick(GAMES), sad=self.pick(["shy", "lonely", "scared"]), happy=self.pick(HAPPY)))
        p.append(self.choose([
            "The next day, {b} waited for {a} at the gate. \"Good morning, friend!\" said {b}. From then on, {a} and {b} were best friends.",
            "When {a} went home, {a.he} told {a.his} {fam}: \"I made a new friend! {b.His} name is {b}. {b.He} {b.is} {trait}, and {b.he} {b.has} a {pet_kind}.\" " + self.ending(a, b),
        ], a=a, b=b, fam=self.pick(["mom", "dad", "grandma", "grandpa"]), trait=self.pick(TRAITS),
            pet_kind=self.pick(PETS)[0]))
        return p

    def trip(self):
        a, b = self.cast(2)
        place = self.pick(["the zoo", "the farm", "the beach", "the lake", "the forest", "the pond"])
        fam = self.family()
        animal, animals = self.pick(ANIMALS)
        n, n_s = self.num(2, 12)
        p = [self.opening(a)]
        p.append(self.choose([
            "One {weather} day, {fam} took {a} and {b} to {place}. They went in a {vehicle}. The trip took {hours_s} hours.",
            "On {day}, {a} went to {place} with {fam}. {a.His} friend {b} came too. \"Are we there yet?\" asked {b}.",
        ], a=a, b=b, fam=fam, place=place, weather=self.pick(["sunny", "warm", "bright", "windy"]),
            vehicle=self.pick(["car", "bus", "train", "boat"]), hours_s=self.num(2, 4)[1],
            day=self.pick(DAYS)))
        p.append(self.choose([
            "At {place}, they saw {n_s} {animals}! {a} pointed at them. \"Look at that one!\" {a.he} said. \"It is so {size}!\"",
            "They walked and walked. Then {b} saw {n_s} {animals}. \"How many are there?\" asked {a}. {b} counted: \"{n}!\"",
        ], a=a, b=b, place=place, n_s=n_s, n=n, animals=animals if n != 1 else animal,
            size=self.pick(SIZES)))
        p.append(self.choose([
            "{fam} bought them each a {treat}. {a.His} {treat} was {color}, and {b.his} was {color2}.",
            "{b} found a {color} {obj} on the ground. {b.He} showed it to {a}. \"Can I keep it?\" {b.he} asked {fam}. \"Yes,\" said {fam}.",
            "At noon, they ate {food} by the water. {a} gave some to {b}, and {b} said, \"Thanks!\"",
        ], a=a, b=b, fam=fam, treat=self.pick(["ice cream", "balloon", "hat", "snack"]),
            color=self.pick(COLORS), color2=self.pick(COLORS), obj=self.pick(OBJECTS)[0],
            food=self.pick(FOODS)[1]))
        p.append(self.choose([
            "On the way home, {a} and {b} fell asleep in the back seat. It was a long, fun day. " + self.ending(a, b),
            "\"Can we come back tomorrow?\" asked {a}. {fam} laughed. \"Maybe next week,\" {fam.he} said. " + self.ending(a, b),
        ], a=a, b=b, fam=fam))
        return p

    def fear(self):
        a = self.pick(CAST)
        fam = self.family()
        thing = self.pick(["the dark", "thunder", "the big dog next door", "the deep water",
                           "the tall slide", "bugs"])
        p = [self.opening(a) + " " + self.fmt("But {a} was afraid of {thing}.", a=a, thing=thing)]
        p.append(self.choose([
            "One night, there was a big storm. Boom! {a} hid under {a.his} blanket. \"I am scared!\" {a.he} cried.",
        ] if thing in ("the dark", "thunder") else [
            "One day, {a} had to face {thing}. {a.His} hands were shaking. \"I can't do it,\" {a.he} said.",
        ], a=a, thing=thing))
        night = thing in ("the dark", "thunder")
        p.append(self.choose([
            "{fam} came and sat on the bed. \"It is okay to be scared,\" {fam.he} said. \"Everyone is scared sometimes. Even me!\"",
            "{fam} held {a.his} hand. \"You are braver than you think, {a},\" said {fam}. \"Let's count to {n_s} together.\"",
        ] if night else [
            "{fam} held {a.his} hand. \"You are braver than you think, {a},\" said {fam}. \"Let's count to {n_s} together.\"",
            "{fam} knelt down next to {a}. \"I will stay right here with you,\" {fam.he} said. \"Let's try together.\"",
        ], a=a, fam=fam, n_s=self.num(3, 10)[1]))
        p.append(self.choose([
            "{a} took a deep breath. One, two, three. {a.He} felt a little better. \"I am brave,\" {a.he} said.",
            "\"Really?\" asked {a}. \"Really,\" said {fam}. {a} smiled. {a.He} did not feel so {sad} now.",
        ], a=a, fam=fam, sad=self.pick(["scared", "afraid", "nervous"])))
        p.append(self.choose([
            "After that, {a} was not afraid of {thing} anymore. {a.He} knew that {a.he} could be brave. " + self.ending(a),
            "The next day, {a} told {a.his} friend {b} about it. \"You were so brave!\" said {b}. " + self.ending(a, None),
        ], a=a, thing=thing, b=self.pick([x for x in CAST if x is not a])))
        return p

    def treasure(self):
        a, b = self.cast(2)
        where = self.pick(["the old oak tree", "the big rock", "the garden gate", "the sandbox",
                           "the red shed", "the well"])
        n, n_s = self.num(3, 12)
        m, m_s = self.num(2, 7)
        prize, prizes = self.pick([("coin", "coins"), ("marble", "marbles"), ("shell", "shells"),
                                   ("star", "stars"), ("button", "buttons")])
        p = [self.opening(a)]
        p.append(self.choose([
            "One day, {a} found an old map in a box. \"What is this?\" {a.he} asked. There was a big X on the map, next to {where}.",
            "{a} and {b} were playing in the yard when {b} found a map under a stone. \"A treasure map!\" said {b}. \"Look, the X is by {where}!\"",
        ], a=a, b=b, where=where))
        p.append(self.choose([
            "{a} ran to get {a.his} friend {b}. \"Do you want to find a treasure with me?\" asked {a}. \"Yes!\" said {b}. \"Let's go!\"",
            "\"How do we get there?\" asked {a}. {b} looked at the map. \"We walk {n_s} steps to the tree, then {m_s} steps to the left,\" {b.he} said.",
        ], a=a, b=b, n_s=n_s, m_s=m_s))
        p.append(self.choose([
            "They walked and counted. When they got to {where}, {b} began to dig. {a} helped too. Soon they found a little {color} box!",
            "At {where}, they dug and dug. Their hands were dirty. \"Is it here?\" asked {b}. Then {a}'s spoon hit something hard. It was a box!",
        ], a=a, b=b, where=where, color=self.pick(COLORS)))
        p.append(self.choose([
            "Inside the box, there were {n_s} shiny {prizes}. \"We are rich!\" shouted {b}. {a} laughed. They shared the {prizes}, so each of them got some. " + self.ending(a, b),
            "{a} opened the box. Inside was a note. It said: \"The best treasure is a friend.\" {a} looked at {b} and smiled. \"That is true,\" said {a}. " + self.ending(a, b),
        ], a=a, b=b, n_s=n_s, prizes=prizes))
        return p

    def garden(self):
        a = self.pick(CAST)
        fam = self.family()
        seed, plants = self.pick(SEEDS)
        n, n_s = self.num(3, 10)
        d, d_s = self.num(5, 12)
        p = [self.opening(a)]
        p.append(self.choose([
            "One spring day, {fam} gave {a} a small bag of {seed} seeds. \"Plant them in the garden,\" said {fam}. \"Then wait and see.\"",
            "{a} wanted to grow {plants}. {a.He} asked {fam}, \"Can I have a little garden?\" \"Of course,\" said {fam}.",
        ], a=a, fam=fam, seed=seed, plants=plants))
        p.append(self.choose([
            "{a} dug {n_s} little holes. {a.He} put one seed in each hole. Then {a.he} gave them water from {a.his} {color} can.",
            "Every morning, {a} watered the seeds. {a.He} sang to them too. \"Grow, little seeds, grow!\" {a.he} said.",
        ], a=a, n_s=n_s, color=self.pick(COLORS)))
        p.append(self.choose([
            "For {d_s} days, nothing happened. {a} was {sad}. \"Why are they not growing?\" {a.he} asked. \"Be patient,\" said {fam}.",
            "One day, a {animal} came into the garden. \"Go away!\" said {a}. \"Those are my {plants}!\" The {animal} ran off.",
        ], a=a, fam=fam, d_s=d_s, sad=self.pick(SAD), animal=self.pick(ANIMALS)[0], plants=plants))
        p.append(self.choose([
            "Then one morning, {a} saw small green leaves! Soon there were {n_s} {plants} in the garden. {a} was so {happy}. " + self.ending(a),
            "At last, the {plants} grew tall. {a} picked one and gave it to {fam}. \"Thank you, {a},\" said {fam}. \"You worked so hard!\" " + self.ending(a),
        ], a=a, fam=fam, n_s=n_s, plants=plants, happy=self.pick(HAPPY)))
        return p

    def lost_pet(self):
        a, b = self.cast(2)
        pet = self.pet()
        place = self.pick(PLACES)
        p = [self.opening(a) + " " + self.fmt("{a.He} had a {kind} named {pet}.", a=a, kind=pet.kind, pet=pet)]
        p.append(self.choose([
            "One morning, {pet} was not in its bed. {a} looked everywhere. \"{pet}! Where are you?\" {a.he} called. But {pet} did not come.",
            "On {day}, {a} left the door open. When {a.he} came back, {pet} was gone! {a} felt very {sad}.",
        ], a=a, pet=pet, day=self.pick(DAYS), sad=self.pick(SAD)))
        p.append(self.choose([
            "{a} ran to {b}'s house. \"Have you seen my {kind}?\" {a.he} asked. \"No,\" said {b}, \"but I will help you look.\"",
            "{a.His} neighbor {b} saw {a} crying. \"What happened?\" asked {b}. \"{pet} is lost!\" said {a}. \"Let's find {pet} together,\" said {b}.",
        ], a=a, b=b, pet=pet, kind=pet.kind))
        p.append(self.choose([
            "They looked in {place}. They looked behind the shop. Then {b} heard a small noise. \"Listen!\" {b.he} said. It was {pet}, hiding under a bench!",
            "They walked to {place} and called, \"{pet}! {pet}!\" After a long time, {pet} came running to {a}. {pet} was muddy but safe.",
        ], a=a, b=b, pet=pet, place=place))
        p.append(self.choose([
            "{a} picked up {pet} and hugged it. \"I missed you so much!\" {a.he} said. Then {a.he} thanked {b}. \"You are the best, {b}!\" " + self.ending(a, b),
            "When they got home, {a} gave {pet} a bath and some food. From then on, {a} always closed the door. " + self.ending(a),
        ], a=a, b=b, pet=pet))
        return p

    def music_show(self):
        a, b, c = self.cast(3)
        inst = self.pick(INSTRUMENTS)
        song = self.pick(SONGS)
        n, n_s = self.num(5, 12)
        p = [self.opening(a) + " " + self.fmt("{a} loved to play the {inst}.", a=a, inst=inst)]
        p.append(self.choose([
            "One day, {a.his} teacher said, \"Next {day}, we will have a show. Who wants to play?\" {a} put {a.his} hand up. \"Me! I will play {song}!\"",
            "{a} and {b} wanted to put on a show for their families. \"You sing, and I will play the {inst},\" said {a}. \"Okay!\" said {b}.",
        ], a=a, b=b, day=self.pick(DAYS), song=song, inst=inst))
        p.append(self.choose([
            "Every day, {a} practiced for {n_s} minutes. Sometimes {a.he} made mistakes. \"It's okay,\" said {b}. \"Try again!\"",
            "On the day of the show, {a} felt {sad}. {a.His} tummy felt funny. \"What if I make a mistake?\" {a.he} asked {c}. \"You will be great,\" said {c}.",
        ], a=a, b=b, c=c, n_s=n_s, sad=self.pick(["nervous", "scared", "worried"])))
        p.append(self.choose([
            "At the show, {a} played {song}. Everyone clapped and cheered. \"Hooray for {a}!\" shouted {c}. {a} took a bow.",
            "{a} began to play. {b} sang along, and {c} danced. The people clapped their hands. It was a wonderful show!",
        ], a=a, b=b, c=c, song=song))
        p.append(self.choose([
            "After the show, {a.his} family gave {a.him} a big hug. \"We are so proud of you!\" they said. " + self.ending(a),
            "{a} learned that practice helps. {a.He} could not wait for the next show. " + self.ending(a, b),
        ], a=a, b=b))
        return p

    PLOTS = ["lost_item", "sharing", "birthday", "animal_help", "rainy_day", "race", "baking",
             "new_friend", "trip", "fear", "treasure", "garden", "lost_pet", "music_show"]

    def story(self):
        plot = self.pick(self.PLOTS)
        return "\n\n".join(getattr(self, plot)())


def make_stories(n, seed):
    rng = random.Random(seed)
    s = Story(rng)
    return [s.story() for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

def train_tokenizer(texts, out_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    def fresh(model):
        tok = Tokenizer(model)
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return tok

    # 1. BPE over the bytes, one token short of VOCAB_SIZE
    tok = fresh(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - 1, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    trained = json.loads(tok.to_str())["model"]
    vocab = trained["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    assert len(vocab) == VOCAB_SIZE - 1, len(vocab)
    # 2. <|endoftext|> as the last id, in the vocabulary and as a special added token (GPT-2's layout)
    eot_id = len(vocab)
    vocab[EOT] = eot_id
    tok = fresh(models.BPE(vocab=vocab, merges=merges))
    tok.add_special_tokens([EOT])
    assert tok.token_to_id(EOT) == eot_id and tok.get_vocab_size() == VOCAB_SIZE

    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(dict(sorted(vocab.items(), key=lambda kv: kv[1])), f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    return tok, eot_id


def bytes_to_unicode():
    """GPT-2's map from bytes to printable characters (OpenAI's encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ReferenceEncoder:
    """OpenAI's GPT-2 encoder.py over vocab.json + merges.txt: a check independent of HF."""

    def __init__(self, vocab_path, merges_path):
        import regex
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        assert lines[0].startswith("#version: 0.2")
        self.ranks = {tuple(ln.split(" ")): i for i, ln in enumerate(lines[1:]) if ln}
        self.byte_map = bytes_to_unicode()
        self.pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(self, word):
        word = list(word)
        while len(word) > 1:
            pairs = [(self.ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            rank, _ = min(pairs)
            if rank == math.inf:
                break
            first, second = next((word[i], word[i + 1]) for r, i in pairs if r == rank)
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text):
        ids = []
        for i, part in enumerate(text.split(EOT)):
            if i:
                ids.append(self.vocab[EOT])
            for piece in self.pat.findall(part):
                mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
                ids.extend(self.vocab[t] for t in self.bpe(mapped))
        return ids


def check_tokenizer(tok, out_dir, lines):
    """Every way of reading the saved files must encode as the trained tokenizer does."""
    import tempfile
    from transformers import GPT2TokenizerFast

    eot_id = tok.token_to_id(EOT)
    readers = {"GPT2TokenizerFast(tokenizer.json)": GPT2TokenizerFast.from_pretrained(out_dir),
               "encoder.py (vocab.json + merges.txt)": ReferenceEncoder(
                   os.path.join(out_dir, "vocab.json"), os.path.join(out_dir, "merges.txt"))}
    with tempfile.TemporaryDirectory() as slow_only:    # no tokenizer.json: built from the slow files
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(out_dir, name), slow_only)
        readers["GPT2TokenizerFast(vocab.json + merges.txt)"] = GPT2TokenizerFast.from_pretrained(slow_only)
    for name, t in readers.items():
        if hasattr(t, "convert_tokens_to_ids"):
            assert t.convert_tokens_to_ids(EOT) == eot_id and len(t) == tok.get_vocab_size(), name
    texts = list(lines) + [lines[0] + EOT + lines[1], EOT + lines[2] + EOT]
    bad = []
    for text in texts:
        want = tok.encode(text).ids
        assert tok.decode(want, skip_special_tokens=False) == text
        bad += [name for name, t in readers.items() if t.encode(text) != want]
    if bad:
        sys.exit(f"tokenizer check: {len(bad)} encodings differ: {sorted(set(bad))}")
    print(f"tokenizer check: {len(texts)} texts ({len(lines)} corpus lines, 2 with {EOT}) encode the "
          f"same with tokenizers and with {', '.join(readers)}", flush=True)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

def pack(tok, texts, eot_id, n_ctx):
    """TransformerLens's tokenize_and_concatenate: EOT-joined stream, BOS + (n_ctx - 1) tokens per row."""
    import torch
    stream = []
    for enc in tok.encode_batch(texts):
        stream.append(eot_id)
        stream.extend(enc.ids)
    body = n_ctx - 1
    n_rows = len(stream) // body
    t = torch.tensor(stream[:n_rows * body], dtype=torch.long).view(n_rows, body)
    return torch.cat([torch.full((n_rows, 1), eot_id, dtype=torch.long), t], dim=1), len(stream)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=HERE, help="folder for stories.jsonl and model/ (default: demo/)")
    ap.add_argument("--quick", action="store_true", help="a few steps, to check the plumbing")
    args = ap.parse_args()
    if args.quick:
        args.steps = 20
        if args.out == HERE:        # never overwrite the bundled files with a 20-step model
            import tempfile
            args.out = tempfile.mkdtemp(prefix="demo-quick.")

    import numpy as np
    import torch
    import transformers
    import tokenizers
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    transformers.utils.logging.disable_progress_bar()
    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, tokenizers {tokenizers.__version__}, {args.threads} threads, "
          f"seed {SEED}", flush=True)

    # 1. the corpus
    stories = make_stories(N_SHIPPED + N_TRAIN, SEED)
    shipped, train = stories[:N_SHIPPED], stories[N_SHIPPED:]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "stories.jsonl"), "w", encoding="utf-8") as f:
        for s in shipped:
            f.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")
    n_bytes = sum(len(s.encode()) for s in train)
    print(f"corpus: {len(stories)} stories, {len(set(stories))} distinct; {len(shipped)} in "
          f"stories.jsonl ({os.path.getsize(os.path.join(args.out, 'stories.jsonl'))} bytes, "
          f"held out), {len(train)} for training ({n_bytes / 1e6:.1f} MB)", flush=True)

    # 2. the tokenizer (trained on the training stories only)
    model_dir = os.path.join(args.out, "model")
    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)
    tok, eot_id = train_tokenizer(train, model_dir)
    lines = [ln for s in shipped[:100] for ln in s.split("\n\n")][:200]
    check_tokenizer(tok, model_dir, lines)

    # 3. the model
    train_rows, n_train_tok = pack(tok, train, eot_id, N_CTX)
    held_rows, n_held_tok = pack(tok, shipped, eot_id, N_CTX)
    print(f"tokens: {n_train_tok} training ({n_bytes / n_train_tok:.2f} bytes/token) in "
          f"{len(train_rows)} rows of {N_CTX}; {n_held_tok} held out in {len(held_rows)} rows; "
          f"{EOT} = {eot_id}", flush=True)

    config = GPTNeoConfig(
        vocab_size=VOCAB_SIZE, hidden_size=128, num_heads=4, num_layers=2,
        attention_types=[[["global", "local"], 1]], window_size=64, max_position_embeddings=N_CTX,
        intermediate_size=512, activation_function="gelu_new", bos_token_id=eot_id,
        eos_token_id=eot_id, embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0,
        tie_word_embeddings=True)
    model = GPTNeoForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT-Neo, {n_params} parameters", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    warmup = min(200, args.steps // 10 + 1)

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    gen = torch.Generator().manual_seed(SEED)
    order = torch.randperm(len(train_rows), generator=gen)
    pos = 0

    def held_out_loss(max_rows=512):
        model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, min(len(held_rows), max_rows), 64):
                x = held_rows[i:i + 64]
                total += model(input_ids=x, labels=x).loss.item() * len(x)
                n += len(x)
        model.train()
        return total / n

    model.train()
    t_train = time.time()
    ema = None
    for step in range(args.steps):
        if pos + args.batch > len(order):
            order = torch.randperm(len(train_rows), generator=gen)
            pos = 0
        x = train_rows[order[pos:pos + args.batch]]
        pos += args.batch
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  (avg {ema:.4f})  lr {lr_at(step):.2e}  "
                  f"{time.time() - t_train:6.0f}s", flush=True)
    train_time = time.time() - t_train

    # final losses: the same number of rows of each set, in eval mode
    model.eval()
    with torch.no_grad():
        tr = train_rows[torch.randperm(len(train_rows), generator=gen)[:512]]
        train_loss = sum(model(input_ids=tr[i:i + 64], labels=tr[i:i + 64]).loss.item()
                         for i in range(0, len(tr), 64)) / ((len(tr) + 63) // 64)
    held_loss = held_out_loss()
    print(f"final: train loss {train_loss:.4f}, held-out loss {held_loss:.4f} "
          f"(512 rows of {N_CTX} tokens each; {args.steps} steps of {args.batch} x {N_CTX} tokens, "
          f"{train_time:.0f}s)", flush=True)

    # 4. samples
    prompts = ["Once upon a time, there was a", "Lily", "Tom and Mia went to the park.",
               "\"Can I have one, please?\" asked", "Alex was new in town."]
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([[eot_id] + tok.encode(p).ids])
            out = model.generate(ids, max_new_tokens=100, do_sample=False, pad_token_id=eot_id,
                                 eos_token_id=eot_id)
            text = tok.decode(out[0, 1:].tolist(), skip_special_tokens=False)
            print(f"--- sample (greedy) from {p!r}:\n{text}\n", flush=True)

    # 5. save
    model.save_pretrained(model_dir, safe_serialization=True)
    gc = os.path.join(model_dir, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    for name in os.listdir(model_dir):     # safetensors writes 0600: let other users (a server) read
        os.chmod(os.path.join(model_dir, name), 0o644)
    # reload check: the saved folder gives the same logits
    again = GPTNeoForCausalLM.from_pretrained(model_dir)
    again.eval()
    with torch.no_grad():
        x = held_rows[:4]
        d = (again(input_ids=x).logits - model(input_ids=x).logits).abs().max().item()
    assert d == 0.0, d
    for name in sorted(os.listdir(model_dir)):
        print(f"  {os.path.join(model_dir, name)}: {os.path.getsize(os.path.join(model_dir, name))} bytes")
    print(f"done in {time.time() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
