"""What happened between the speakers of a dialogue, measured the same way every time.

`analyze()` takes a dialogue's turns (any run's, imported ones included) and gives per
turn, per speaker and per dialogue signals: questions, hedges and boosters, agreement,
challenge and concession markers, echo, novelty and self-repetition of content phrases,
similarity to the previous turn, phrase lineage, loops, and whether the closing's account
of each speaker's position can be found in that speaker's turns. The result's keys are a
public contract (README, "Analysis").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from graphs.insight import text as tx

Verdict = str  # "converged" | "contested" | "mixed"
LOOP_SHARE = 0.5
"""A turn whose content phrases are at least this share repeats of earlier ones takes part in a loop."""
SUPPORT_SHARE = 0.5
"""A closing's claim is supported when a passage of the speaker holds this share of its content words."""
MIN_CLAIM_WORDS = 2
MAX_PHRASES = 25
EVIDENCE_CHARS = 240


@dataclass(frozen=True)
class DialogueTurn:
    """What the analysis reads of a turn."""

    number: int
    speaker: str
    """The label as the transcript's headings show it."""
    kind: str
    text: str


class TurnSignals(BaseModel):
    """One turn's signals: `turns` in analysis.json."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    turn: int
    """The turn's number."""
    speaker: str
    """Its speaker's label, as the transcript's headings show it."""
    kind: str
    """opening, response, reply or closing."""
    words: int
    """Words in the turn."""
    questions: int
    """Sentences that end with a question mark."""
    questions_to_others: int
    """Questions that address another participant (you, your, or another's label)."""
    hedges: int
    """Hedges (perhaps, might, seems ...) from Hyland's list."""
    boosters: int
    """Boosters (clearly, indeed, must ...) from Hyland's list."""
    agreements: int
    """Agreement markers (I agree, you're right, we both ...)."""
    challenges: int
    """Challenge markers: explicit disagreement, rejecting a claim or a framing, calling an analogy broken."""
    concessions: int
    """Concession markers (fair point, I concede, admittedly ...)."""
    markers: dict[str, list[str]]
    """The agreement, challenge and concession markers found, as the lexicon writes them."""
    echo_share: float
    """Share of the turn's content phrases that another participant said first."""
    echo_phrases: list[str]
    """Those phrases, as first written."""
    novelty: float
    """Share of the turn's content phrases new to the dialogue."""
    self_repetition: float
    """Share of the turn's content phrases the same speaker used in an earlier turn."""
    internal_repetition: float
    """Share of the turn's phrase occurrences that repeat a phrase earlier in the same turn."""
    similarity_to_previous: float | None
    """Cosine similarity of content words with the previous turn; null for the first."""
    embedding_similarity_to_previous: float | None = None
    """With --embed-model: cosine similarity of the two turns' embeddings; else null."""


class SpeakerSignals(BaseModel):
    """One speaker's signals over its turns: `speakers` in analysis.json, by label."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    turns: int
    """The speaker's turns."""
    words: int
    """Words over those turns."""
    questions: int
    """Questions asked."""
    questions_to_others: int
    """Questions put to another participant."""
    hedges: int
    """Hedges used."""
    boosters: int
    """Boosters used."""
    hedges_per_100w: float
    """Hedges per 100 words."""
    boosters_per_100w: float
    """Boosters per 100 words."""
    agreements: int
    """Agreement markers."""
    challenges: int
    """Challenge markers."""
    concessions: int
    """Concession markers."""
    echo_share: float
    """The mean echo_share of its turns."""
    novelty: float
    """The mean novelty of its turns."""
    phrases_taken_up: int
    """Phrases another speaker said first that this one used later."""


class PhraseLineage(BaseModel):
    """A content phrase one speaker said first and another took up: `phrases` in analysis.json."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    phrase: str
    """Two content words close together in one clause, as first written ('fiction of coherence')."""
    first_by: str
    """Who said it first."""
    first_turn: int
    """In which turn."""
    adopted_by: list[str]
    """Who else used it later, in order."""
    turns: list[int]
    """Every turn it appears in."""


class Loop(BaseModel):
    """Turns that mostly repeat what was said before: `loops` in analysis.json."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    turns: list[int]
    """A run of consecutive turns whose phrases are mostly repeats, or one turn that repeats itself."""
    share_repeated: float
    """The share of their content phrases that are repeats."""


class Attribution(BaseModel):
    """A position the closing attributes to a participant: `closing_attribution` in analysis.json."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    claim: str
    """What the closing says the participant holds ('you emphasize ...', 'to you, ...', 'I stress ...')."""
    attributed_to: str
    """The participant's label."""
    supported: bool
    """Whether two sentences in a row of that participant's own turns hold half its content words."""
    evidence: str | None
    """Those sentences, quoted; null when unsupported."""


class StanceLabel(BaseModel):
    """A judge's label of one turn."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    turn: int
    """The turn labelled."""
    stance: str
    """agrees, extends, challenges or concedes, towards the turn before."""
    quote: str
    """The span of the turn the judge gave as evidence; it is in the turn's text."""


class JudgeLabels(BaseModel):
    """`judge` in analysis.json: a model's labels, apart from the deterministic signals."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    model: str
    """The judge's model."""
    labels: list[StanceLabel]
    """One per labelled turn, from turn 2 on."""
    dropped: list[int]
    """Turns whose label was dropped because its quote is not in the turn."""


class Analysis(BaseModel):
    """analysis.json: what `duologue analyze` found in a run."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    run_id: str
    """The run analyzed."""
    verdict: str
    """converged (agreements and concessions at least three times the challenges), contested
    (challenges from two speakers or more, or more challenges than agreements) or mixed."""
    verdict_reason: str
    """The counts behind the verdict."""
    speakers: dict[str, SpeakerSignals]
    """Per speaker, by label."""
    turns: list[TurnSignals]
    """Per turn, in order."""
    phrases: list[PhraseLineage]
    """Phrase lineage: up to 25 phrases taken up by another speaker, most taken up first."""
    loops: list[Loop]
    """Loops, in order."""
    closing_attribution: list[Attribution]
    """The closing's account of each position, checked."""
    summary: list[str]
    """The analysis in plain sentences."""
    judge: JudgeLabels | None = None
    """With --judge: a model's stance labels, apart from the deterministic signals; else null."""
    embed_model: str | None = None
    """With --embed-model: the model whose embeddings gave embedding_similarity_to_previous."""


def analyze(
    run_id: str,
    turns: Sequence[DialogueTurn],
    judge: JudgeLabels | None = None,
    embeddings: tuple[str, Sequence[Sequence[float]]] | None = None,
) -> Analysis:
    """`embeddings`: a model's name and one vector per turn, for embedding_similarity_to_previous."""
    labels = list(dict.fromkeys(t.speaker for t in turns))
    found = [tx.phrases(turn.text) for turn in turns]
    turn_signals = measure_turns(turns, labels, found)
    if embeddings is not None:
        vectors = embeddings[1]
        for index, signal in enumerate(turn_signals[1:], start=1):
            signal.embedding_similarity_to_previous = round(
                dense_cosine(vectors[index - 1], vectors[index]), 3
            )
    lineage = phrase_lineage(turns, found)
    speakers = {label: speaker_signals(label, turn_signals, lineage) for label in labels}
    verdict, reason = verdict_of(turn_signals)
    loops = find_loops(turn_signals, [len(in_turn) for in_turn in found])
    attribution = closing_attribution(turns, labels)
    analysis = Analysis(
        run_id=run_id,
        verdict=verdict,
        verdict_reason=reason,
        speakers=speakers,
        turns=turn_signals,
        phrases=lineage,
        loops=loops,
        closing_attribution=attribution,
        summary=[],
        judge=judge,
        embed_model=embeddings[0] if embeddings else None,
    )
    analysis.summary = summarize(analysis, labels)
    return analysis


# -- per turn ---------------------------------------------------------------------------------


def measure_turns(
    turns: Sequence[DialogueTurn], labels: Sequence[str], phrases: Sequence[list[tx.Phrase]]
) -> list[TurnSignals]:
    first_said: dict[tuple[str, str], str] = {}
    said_by: dict[str, set[tuple[str, str]]] = {label: set() for label in labels}
    previous: Counter[str] | None = None
    measured = []
    for turn, found in zip(turns, phrases, strict=True):
        keys = list(dict.fromkeys(p.key for p in found))
        surfaces = {p.key: p.surface for p in reversed(found)}
        echoed = [k for k in keys if k in first_said and first_said[k] != turn.speaker]
        new = [k for k in keys if k not in first_said]
        own = [k for k in keys if k in said_by[turn.speaker]]
        bag = Counter(tx.content_stems(turn.text))
        others = [label for label in labels if label != turn.speaker]
        questions = [s for s in tx.sentences(turn.text) if tx.is_question(s)]
        agreements = tx.count_markers(turn.text, "agreements")
        challenges = tx.count_markers(turn.text, "challenges")
        concessions = tx.count_markers(turn.text, "concessions")
        measured.append(
            TurnSignals(
                turn=turn.number,
                speaker=turn.speaker,
                kind=turn.kind,
                words=len(tx.words(turn.text)),
                questions=len(questions),
                questions_to_others=sum(1 for q in questions if addresses_another(q, others)),
                hedges=len(tx.count_markers(turn.text, "hedges")),
                boosters=len(tx.count_markers(turn.text, "boosters")),
                agreements=len(agreements),
                challenges=len(challenges),
                concessions=len(concessions),
                markers={"agreements": agreements, "challenges": challenges, "concessions": concessions},
                echo_share=share(len(echoed), len(keys)),
                echo_phrases=[surfaces[k] for k in echoed],
                novelty=share(len(new), len(keys)),
                self_repetition=share(len(own), len(keys)),
                internal_repetition=share(len(found) - len(keys), len(found)),
                similarity_to_previous=None if previous is None else round(cosine(previous, bag), 3),
            )
        )
        for key in keys:
            first_said.setdefault(key, turn.speaker)
        said_by[turn.speaker].update(keys)
        previous = bag
    return measured


def addresses_another(question: str, others: Sequence[str]) -> bool:
    said = set(tx.words(question))
    if said & {"you", "your", "yours", "yourself", "you're", "you've", "you'd"}:
        return True
    return any(set(tx.words(label)) and set(tx.words(label)) <= said for label in others)


def dense_cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def share(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else 0.0


def cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(count * b[word] for word, count in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


# -- per speaker and per dialogue ---------------------------------------------------------------


def speaker_signals(
    label: str, turns: Sequence[TurnSignals], lineage: Sequence[PhraseLineage]
) -> SpeakerSignals:
    own = [t for t in turns if t.speaker == label]
    words = sum(t.words for t in own)
    hedges, boosters = sum(t.hedges for t in own), sum(t.boosters for t in own)
    return SpeakerSignals(
        turns=len(own),
        words=words,
        questions=sum(t.questions for t in own),
        questions_to_others=sum(t.questions_to_others for t in own),
        hedges=hedges,
        boosters=boosters,
        hedges_per_100w=round(100 * hedges / words, 2) if words else 0.0,
        boosters_per_100w=round(100 * boosters / words, 2) if words else 0.0,
        agreements=sum(t.agreements for t in own),
        challenges=sum(t.challenges for t in own),
        concessions=sum(t.concessions for t in own),
        echo_share=round(sum(t.echo_share for t in own) / len(own), 3) if own else 0.0,
        novelty=round(sum(t.novelty for t in own) / len(own), 3) if own else 0.0,
        phrases_taken_up=sum(1 for p in lineage if label in p.adopted_by),
    )


def verdict_of(turns: Sequence[TurnSignals]) -> tuple[str, str]:
    """converged, contested or mixed, from the agreements, concessions and challenges.

    Contested: pushback from two speakers or more, or more challenges than agreements.
    Converged: agreements and concessions at least three times the challenges. Mixed: between,
    or no marker of either.
    """
    agreed = sum(t.agreements + t.concessions for t in turns)
    challenged = sum(t.challenges for t in turns)
    challengers = {t.speaker for t in turns if t.challenges}
    counts = f"{agreed} agreement(s) and concession(s), {challenged} challenge(s)"
    if challenged >= 2 and (len(challengers) >= 2 or challenged > agreed):
        return "contested", f"{counts}, from {len(challengers)} speaker(s)"
    if agreed and agreed >= 3 * challenged:
        return "converged", counts
    return "mixed", counts


def phrase_lineage(turns: Sequence[DialogueTurn], phrases: Sequence[list[tx.Phrase]]) -> list[PhraseLineage]:
    """Each content phrase one speaker said first and another took up later."""
    seen: dict[tuple[str, str], dict[str, object]] = {}
    for turn, in_turn in zip(turns, phrases, strict=True):
        for found in in_turn:
            entry = seen.setdefault(
                found.key,
                {"phrase": found.surface, "first_by": turn.speaker, "first_turn": turn.number, "uses": []},
            )
            uses: list[tuple[int, str]] = entry["uses"]  # type: ignore[assignment]
            if not uses or uses[-1][0] != turn.number:
                uses.append((turn.number, turn.speaker))
    lineage = []
    for entry in seen.values():
        uses = entry["uses"]  # type: ignore[assignment]
        adopted = list(dict.fromkeys(s for _n, s in uses if s != entry["first_by"]))  # type: ignore[attr-defined]
        if adopted:
            lineage.append(
                PhraseLineage(
                    phrase=str(entry["phrase"]),
                    first_by=str(entry["first_by"]),
                    first_turn=int(entry["first_turn"]),  # type: ignore[call-overload]
                    adopted_by=adopted,
                    turns=[n for n, _s in uses],  # type: ignore[attr-defined]
                )
            )
    lineage.sort(key=lambda p: (-len(p.adopted_by), -len(p.turns), p.first_turn, p.phrase))
    return sorted(lineage[:MAX_PHRASES], key=lambda p: (p.first_turn, -len(p.turns), p.phrase))


def find_loops(signals: Sequence[TurnSignals], phrase_counts: Sequence[int]) -> list[Loop]:
    """Runs of turns that mostly repeat what was said before, and turns that repeat themselves.

    A turn with no content phrase at all repeats nothing.
    """
    loops: list[Loop] = []
    run: list[TurnSignals] = []

    def close() -> None:
        if len(run) >= 2:
            shares = [1 - t.novelty for t in run]
            loops.append(
                Loop(turns=[t.turn for t in run], share_repeated=round(sum(shares) / len(shares), 3))
            )

    for signal, phrases in zip(signals, phrase_counts, strict=True):
        repeated = phrases > 0 and signal.turn > signals[0].turn and 1 - signal.novelty >= LOOP_SHARE
        if repeated:
            run.append(signal)
            continue
        close()
        run = []
        if signal.internal_repetition >= LOOP_SHARE:
            loops.append(Loop(turns=[signal.turn], share_repeated=signal.internal_repetition))
    close()
    return loops


# -- the closing's account of each position -------------------------------------------------------

ATTRIBUTING_VERBS = (
    r"(?:emphasi[sz]e|stress|argue|suggest|frame|see|view|highlight|believe|claim|hold|insist|maintain|"
    r"propose|point(?:ed)? out|note|lean(?:ed)? (?:into|toward|towards)|prefer|focus(?:ed)? on|describe|"
    r"treat|favou?r|say|said|contend|think|thought|feel|felt|put it|called?|characteri[sz]e|see)[sd]?"
)
YOU_SAY = re.compile(
    rf"\byou\s+(?:also\s+|rightly\s+|instead\s+)?{ATTRIBUTING_VERBS}\b\s*(?P<claim>.+)", re.I
)
TO_YOU = re.compile(r"\b(?:to|for)\s+you\s*,\s*(?P<claim>.+)", re.I)
YOUR_VIEW = re.compile(
    r"\byour\s+(?:view|position|point|argument|framing|emphasis|claim|idea|stance|reading)\s+"
    r"(?:is|was)\s+(?:that\s+)?(?P<claim>.+)",
    re.I,
)
I_SAY = re.compile(rf"\bI\s+(?:also\s+|instead\s+)?{ATTRIBUTING_VERBS}\b\s*(?P<claim>.+)", re.I)
TO_ME = re.compile(r"\b(?:to|for)\s+me\s*,\s*(?P<claim>.+)", re.I)
CLAUSE_SPLIT = re.compile(r";|\bwhile\b|\bwhereas\b|\bbut\b(?=\s+(?:I|you)\b)", re.I)


def closing_attribution(turns: Sequence[DialogueTurn], labels: Sequence[str]) -> list[Attribution]:
    closing = next((t for t in reversed(turns) if t.kind == "closing"), None)
    if closing is None or len(labels) < 2:
        return []
    earlier = [t for t in turns if t.number < closing.number]
    addressee = next((t.speaker for t in reversed(earlier) if t.speaker != closing.speaker), None)
    found: list[Attribution] = []
    for sentence in tx.sentences(closing.text):
        for clause in CLAUSE_SPLIT.split(sentence):
            for speaker, claim in attributions(clause, closing.speaker, addressee, labels):
                found.append(check_claim(claim, speaker, earlier))
    return found


def attributions(
    clause: str, closer: str, addressee: str | None, labels: Sequence[str]
) -> list[tuple[str, str]]:
    claims: list[tuple[str, str]] = []
    for pattern in (YOU_SAY, TO_YOU, YOUR_VIEW):
        match = pattern.search(clause)
        if match and addressee:
            claims.append((addressee, match.group("claim")))
            break
    for pattern in (I_SAY, TO_ME):
        match = pattern.search(clause)
        if match:
            claims.append((closer, match.group("claim")))
            break
    for label in labels:
        if label == closer:
            continue
        named = re.search(
            rf"\b{re.escape(label)}(?:'s)?\s+{ATTRIBUTING_VERBS}\b\s*(?P<claim>.+)", clause, re.I
        )
        if named:
            claims.append((label, named.group("claim")))
    return [
        (who, tidy(claim)) for who, claim in claims if len(set(tx.content_stems(claim))) >= MIN_CLAIM_WORDS
    ]


def tidy(claim: str) -> str:
    return " ".join(claim.split()).strip(" ,.;:—–-*\"'“”")


def check_claim(claim: str, speaker: str, earlier: Sequence[DialogueTurn]) -> Attribution:
    """Supported when two sentences in a row of the speaker's earlier turns hold enough of the claim."""
    wanted = set(tx.content_stems(claim))
    best, evidence = 0.0, None
    for turn in earlier:
        if turn.speaker != speaker:
            continue
        said = tx.sentences(turn.text)
        for index in range(len(said)):
            passage = " ".join(said[index : index + 2])
            score = len(wanted & set(tx.content_stems(passage))) / len(wanted)
            if score > best:
                best, evidence = score, passage
    supported = best >= SUPPORT_SHARE
    quote = evidence if supported and evidence else None
    if quote and len(quote) > EVIDENCE_CHARS:
        quote = quote[: EVIDENCE_CHARS - 1].rstrip() + "…"
    return Attribution(claim=claim, attributed_to=speaker, supported=supported, evidence=quote)


# -- in words -------------------------------------------------------------------------------------


def summarize(analysis: Analysis, labels: Sequence[str]) -> list[str]:
    agreed = sum(t.agreements for t in analysis.turns)
    conceded = sum(t.concessions for t in analysis.turns)
    challenged = sum(t.challenges for t in analysis.turns)
    lines = [
        f"{analysis.verdict.capitalize()}: {plural(agreed, 'agreement')}, {plural(conceded, 'concession')}, "
        f"{plural(challenged, 'challenge')}."
    ]
    asked = sorted(labels, key=lambda label: -analysis.speakers[label].questions)
    if analysis.speakers[asked[0]].questions:
        lines.append(
            ", ".join(
                f"{label} asked {plural(analysis.speakers[label].questions, 'question')}"
                if i == 0
                else f"{label} {analysis.speakers[label].questions}"
                for i, label in enumerate(asked)
            )
            + "."
        )
    else:
        lines.append("No one asked a question.")
    for label in labels:
        taken: Counter[str] = Counter(p.first_by for p in analysis.phrases if label in p.adopted_by)
        for origin, count in taken.most_common():
            lines.append(f"{label} took up {count} of {origin}'s phrases.")
    hedgiest = max(labels, key=lambda label: analysis.speakers[label].hedges_per_100w)
    if analysis.speakers[hedgiest].hedges:
        rate = analysis.speakers[hedgiest].hedges_per_100w
        lines.append(f"{hedgiest} hedged most ({rate:.1f} hedges per 100 words).")
    if analysis.loops:
        where = "; ".join("turns " + ", ".join(map(str, loop.turns)) for loop in analysis.loops)
        lines.append(f"Loops: {where} mostly repeat what was already said.")
    if analysis.judge is not None:
        stances = Counter(label.stance for label in analysis.judge.labels)
        counted = ", ".join(f"{count} {stance}" for stance, count in stances.most_common()) or "none"
        dropped = len(analysis.judge.dropped)
        lines.append(
            f"The judge ({analysis.judge.model}) labelled {plural(len(analysis.judge.labels), 'turn')}: "
            f"{counted}"
            + (f"; {plural(dropped, 'label')} dropped, its quote not in the turn." if dropped else ".")
        )
    if analysis.closing_attribution:
        unsupported = [a for a in analysis.closing_attribution if not a.supported]
        found = (
            f"{len(unsupported)} of them cannot be found in the speaker's own turns"
            if unsupported
            else "each can be found in the speaker's own turns"
        )
        lines.append(
            f"The closing attributes {plural(len(analysis.closing_attribution), 'position')}; {found}."
        )
    return lines


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
