"""Subject lines as clients, their mail clients and their mail gateways really write them."""

import time
import tomllib

import pytest
from hypothesis import given, settings, strategies as st

from mailbot.errors import RulesError
from mailbot.mail.subject import (
    DEFAULT_SUBJECT_RULES,
    SubjectInfo,
    load_subject_rules,
    parse_subject,
    parse_subject_rules,
    project_key,
    strip_prefixes,
)

RULES = load_subject_rules()

# (subject, framework, language, project, is_reply, is_forward)
PROCESS_SUBJECTS = [
    ("BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", False, False),
    ("BOSA M1036 - Bestelbon – Stad Gent", "M1036", "nl", "Stad Gent", False, False),
    ("BOSA M1036 – Bon de commande – Commune d'Uccle", "M1036", "fr", "Commune d'Uccle", False, False),
    ("BOSA M1036 — Bon de commande — CPAS de Liège", "M1036", "fr", "CPAS de Liège", False, False),
    ("BOSA M1036 ‐ Bestelbon ‐ Gemeente Zaventem", "M1036", "nl", "Gemeente Zaventem", False, False),
    ("BOSA M1036: Bon de commande: SPF Finances", "M1036", "fr", "SPF Finances", False, False),
    ("BOSA M1036 -Bon de Commande- Ville de Mons", "M1036", "fr", "Ville de Mons", False, False),
    ("bosa m1036 - bon de commande - ville de wavre", "M1036", "fr", "ville de wavre", False, False),
    ("BOSA M1036 - BON DE COMMANDE - VILLE DE LIÈGE", "M1036", "fr", "VILLE DE LIÈGE", False, False),
    ("BOSA M1036 - BESTELBON - STAD ANTWERPEN", "M1036", "nl", "STAD ANTWERPEN", False, False),
    ("M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", False, False),
    ("BOSA M 1036 - Bon de commande - Ville de Namur", "M1036", "fr", "Ville de Namur", False, False),
    ("BOSA M-1036 Bestelbon Stad Brugge", "M1036", "nl", "Stad Brugge", False, False),
    ("Bön dè Cömmande BOSA M1036 - Ville de Huy", "M1036", "fr", "Ville de Huy", False, False),
    ("BOSA M1036 - Bon-de-commande - Ville de Namur", "M1036", "fr", "Ville de Namur", False, False),
    ("Re: BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", True, False),
    ("RE : BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", True, False),
    ("TR: BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", False, True),
    ("Tr : BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", False, True),
    ("Fwd: BOSA M1036 - Bestelbon – Stad Gent", "M1036", "nl", "Stad Gent", False, True),
    ("FW: BOSA M1036 - Bestelbon – Stad Gent", "M1036", "nl", "Stad Gent", False, True),
    ("Fw:BOSA M1036 - Bestelbon – Stad Gent", "M1036", "nl", "Stad Gent", False, True),
    ("AW: WG: BOSA M1036 - Bestelbon – Stad Gent", "M1036", "nl", "Stad Gent", True, True),
    ("Antw: BOSA M1036 - Bestelbon – Stad Gent", "M1036", "nl", "Stad Gent", True, False),
    ("Doorst: BOSA M1036 - Bestelbon – Stad Gent", "M1036", "nl", "Stad Gent", False, True),
    ("Réf : BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", True, False),
    ("RE[2]: BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", True, False),
    ("Re: Re: RE: TR: Re : BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr",
     "Ville de Namur", True, True),
    ("[EXTERNAL] RE: BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur",
     True, False),
    ("RE: [EXT] Fwd: BOSA M1036 - Bestelbon - Stad Gent", "M1036", "nl", "Stad Gent", True, True),
    ("[External sender] AW: WG: BOSA M1036 - Bestelbon - Stad Gent", "M1036", "nl", "Stad Gent", True, True),
    ("(Extern) Antw:BOSA M1036 - Bestelbon - Stad Gent", "M1036", "nl", "Stad Gent", True, False),
    ("RE:RE:TR:BOSA M1036 - Bon de commande – Ville de Namur", "M1036", "fr", "Ville de Namur", True, True),
    ("  re :  tr  :   BOSA   M1036  -  Bon de commande  –  Ville de Namur  ", "M1036", "fr",
     "Ville de Namur", True, True),
    ("RE: BOSA M1036 -\r\n Bon de commande –\tVille de Namur", "M1036", "fr", "Ville de Namur", True, False),
    ("BOSA M1112 - Bon de commande - Ville de Namur", "M1112", "fr", "Ville de Namur", False, False),
    ("BOSA M1184 - Bestelbon - Stad Gent", "M1184", "nl", "Stad Gent", False, False),
    ("BOSA - Bon de commande - Ville de Namur", None, "fr", "Ville de Namur", False, False),
    ("FOD BOSA - Bestelbon - Stad Gent", None, "nl", "Stad Gent", False, False),
    ("Ville de Namur - BOSA M1036 - Bon de commande", "M1036", "fr", "Ville de Namur", False, False),
    ("BOSA M1036 - Stad Gent - Bestelbon", "M1036", "nl", "Stad Gent", False, False),
    ("Bon de commande M1036 « Ville de Namur »", "M1036", "fr", "Ville de Namur", False, False),
    ('Bestelbon M1036: "Stad Leuven"', "M1036", "nl", "Stad Leuven", False, False),
    ("BOSA M1036 - Bon de commande ePayment - Ville de Namur", "M1036", "fr", "Ville de Namur", False, False),
    ("Bestelbon_WL_M1036 - Gemeente Zaventem", "M1036", "nl", "Gemeente Zaventem", False, False),
]


@pytest.mark.parametrize("subject, framework, language, project, is_reply, is_forward", PROCESS_SUBJECTS)
def test_process_subjects(subject, framework, language, project, is_reply, is_forward):
    info = parse_subject(subject, RULES)
    assert info.is_process
    assert (info.framework, info.language, info.project) == (framework, language, project)
    assert (info.is_reply, info.is_forward) == (is_reply, is_forward)


@pytest.mark.parametrize("subject, project", [
    ("BOSA M1036 - Bon de commande – Ville de Namur – E-guichet", "Ville de Namur – E-guichet"),
    ("BOSA M1036 - Bestelbon - Stad Gent - e-Loket", "Stad Gent - e-Loket"),
    ("RE: BOSA M1036 - Bon de commande – Ville de Namur – E-guichet [EPAY-2026-0042]",
     "Ville de Namur – E-guichet"),
    ("BOSA M1036 - Bon de commande – 'Ville de Namur' -", "Ville de Namur"),
    ("BOSA M1036 - Bon de commande – Saint-Josse-ten-Noode", "Saint-Josse-ten-Noode"),
    ("BOSA M1036 - Bon de commande", None),
    ("BOSA M1036 - Bon de commande – ", None),
    ("RE: BOSA M1036 - Bestelbon", None),
])
def test_project_extraction(subject, project):
    assert parse_subject(subject, RULES).project == project


@pytest.mark.parametrize("subject", [
    "Question sur le paiement",
    "Bon de commande fournitures de bureau",
    "RE: Bon de commande n° 4512 - papier A4",
    "Bestelbon kantoorbenodigdheden",
    "Newsletter BOSA - mars 2026",
    "M1036 - question sur la facturation",
    "Fwd: Worldline: votre facture de mars",
    "Réunion: ePayment",
    "Tr 2026: budget",
    "Out of office: BOSA M1036",
    "",
    "   ",
    "Re:",
])
def test_non_process_subjects(subject):
    assert not parse_subject(subject, RULES).is_process


def test_framework_without_keyword_is_kept():
    info = parse_subject("RE: M1036 - question sur la facturation", RULES)
    assert info.framework == "M1036" and info.language is None and not info.is_process


def test_unknown_framework_code():
    info = parse_subject("BOSA M9999 - Bon de commande - Ville de Namur", RULES)
    assert info.framework is None
    assert info.is_process  # "BOSA ... Bon de commande"


@pytest.mark.parametrize("subject, core", [
    ("Re: TR: Bonjour", "Bonjour"),
    ("Reunion: budget", "Reunion: budget"),  # a word starting with a prefix is not a prefix
    ("Réunion : budget", "Réunion : budget"),
    ("Trajet: Namur", "Trajet: Namur"),
    ("FWD : Fwd: fw: question", "question"),
    ("Re^2: question", "question"),
    ("RE (3) : question", "question"),
    ("[EXT] [SPAM] question", "question"),
    ("[Ville de Namur] question", "[Ville de Namur] question"),  # unknown tags are the subject's own
    ("question RE: suite", "question RE: suite"),  # only at the start
])
def test_prefixes(subject, core):
    assert strip_prefixes(subject, RULES)[0] == core
    assert parse_subject(subject, RULES).core == core


def test_strip_prefixes_flags():
    assert strip_prefixes("Re: AW: x", RULES) == ("x", True, False)
    assert strip_prefixes("WG: Doorst: x", RULES) == ("x", False, True)
    assert strip_prefixes("x", RULES) == ("x", False, False)
    assert strip_prefixes("Antw : TR : x", RULES) == ("x", True, True)  # the shipped rules


@pytest.mark.parametrize("subject, reference", [
    ("[EPAY-2026-0042] BOSA M1036 - Bon de commande – Ville de Namur", "EPAY-2026-0042"),
    ("RE: BOSA M1036 - Bon de commande – Ville de Namur [EPAY-2026-0042]", "EPAY-2026-0042"),
    ("Re: [epay-2026-0042] question", "EPAY-2026-0042"),
    ("RE: [ EPAY – 2026 – 0042 ] question", "EPAY-2026-0042"),
    ("Antw: dossier EPAY-2027-12 ontvangen", "EPAY-2027-12"),
    ("RE: question [EPAY-2026-0042] [EPAY-2026-0099]", "EPAY-2026-0042"),  # the first one
    ("RE: question EPAY-2026", None),
    ("RE: xEPAY-2026-0042", None),
    ("RE: question", None),
])
def test_reference(subject, reference):
    info = parse_subject(subject, RULES)
    assert info.reference == reference
    if reference:
        assert "EPAY" not in info.core.upper()  # every reference is cut out of the core


def test_reference_before_prefixes_and_cut_from_core():
    info = parse_subject("[EPAY-2026-0042] RE: TR: BOSA M1036 - Bon de commande – Ville de Namur", RULES)
    assert info.reference == "EPAY-2026-0042"
    assert info.core == "BOSA M1036 - Bon de commande – Ville de Namur"
    assert info.is_reply and info.is_forward
    assert info.text.startswith("[EPAY-2026-0042] RE: TR:")


def test_text_is_one_line():
    info = parse_subject("RE: BOSA M1036 -\r\n\tBon de commande\u200b – Ville\u00a0de Namur\x00", RULES)
    assert info.text == "RE: BOSA M1036 - Bon de commande – Ville de Namur"
    assert "\r" not in info.core and "\n" not in info.core


@pytest.mark.parametrize("a, b", [
    ("Ville de Namur – E-guichet", "ville de namur e guichet"),
    ("Ville de Namur – E-guichet", "VILLE DE NAMUR - e-Guichet "),
    ("CPAS de Liège", "cpas de liege"),
    ("Commune d'Uccle", "Commune d’Uccle"),
    ("Œuvre nationale", "oeuvre  nationale"),
    ("Stad\u00a0Gent", "stad gent"),
    ("Ville de Namur", "Ville de Namur.\t"),
])
def test_project_key_same(a, b):
    assert project_key(a) == project_key(b)


def test_project_key_different():
    assert project_key("Ville de Namur") != project_key("Ville de Mons")
    assert project_key("Ville de Namur – E-guichet") == "villedenamureguichet"


def test_huge_garbage_subject_is_fast():
    nasty = [
        "Re: " * 30_000,
        "[EXT" * 30_000,
        "[ EPAY - 2026 - " * 10_000,
        "bon de " * 20_000,
        "M" * 100_000,
        "-" * 100_000 + "Bon de commande",
        "a\u0301" * 50_000,
    ]
    start = time.perf_counter()
    for subject in nasty:
        info = parse_subject(subject, RULES)
        assert len(info.text) <= RULES.max_length
    assert time.perf_counter() - start < 1.0


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=300)
       | st.lists(st.sampled_from(["Re:", "TR :", "[EXT]", "BOSA", "M1036", "M 1036", "–", "-", ":",
                                   "Bon de commande", "Bestelbon", "[EPAY-2026-0042]", "[", "]",
                                   "é", "\r\n", " ", "Ville", "\ud800", "\u200b", "(", "^2"]),
                  max_size=30).map("".join))
def test_parse_subject_never_raises(subject):
    info = parse_subject(subject, RULES)
    assert isinstance(info, SubjectInfo)
    assert "\n" not in info.text and "\r" not in info.text
    if info.project is not None:
        assert info.project and info.project == info.project.strip()
    assert parse_subject(info.text, RULES) == info  # reading the cleaned text again changes nothing


def test_parse_subject_tolerates_non_text():
    assert parse_subject(None, RULES).text == ""  # type: ignore[arg-type]


# ---------------------------------------------------------------- the rules file


def _data():
    return tomllib.loads(DEFAULT_SUBJECT_RULES.read_text(encoding="utf-8"))


def test_shipped_rules_load():
    rules = load_subject_rules()
    assert rules.frameworks == ("M1036", "M1112", "M1184")
    assert set(rules.keywords) == {"fr", "nl"}


def test_rules_are_data():
    data = _data()
    data["process"]["frameworks"].append("M1200")
    data["prefixes"]["reply"].append("odp")  # a client in Polish
    rules = parse_subject_rules(data)
    info = parse_subject("ODP: BOSA M1200 - Bestelbon - Stad Gent", rules)
    assert info.framework == "M1200" and info.is_reply and info.is_process


@pytest.mark.parametrize("change, message", [
    (lambda d: d["process"].update(frameworks=["M1036", "1036"]), "frameworks entry #2 '1036'"),
    (lambda d: d["process"].update(frameworks=[]), "'frameworks' must not be empty"),
    (lambda d: d["process"]["keywords"].update(de=["bestellung"]), "unknown language(s) de"),
    (lambda d: d["process"]["keywords"].update(fr=["bon de commande", ""]), "fr entry #2"),
    (lambda d: d["prefixes"]["forward"].append("RE"), "re cannot be both"),
    (lambda d: d["prefixes"].update(reply="re"), "'reply' must be a list"),
    (lambda d: d["reference"].update(pattern="(epay"), "[reference]: pattern is not a valid"),
    (lambda d: d["reference"].update(pattern="epay-\\d+"), "must have a group"),
    (lambda d: d["reference"].update(pattern="(x?)"), "matches an empty subject"),
    (lambda d: d["limits"].update(max_length=5), "max_length must be between"),
    (lambda d: d["limits"].update(max_length="1000"), "'max_length' must be a int"),
    (lambda d: d["prefixes"].update(replies=["re"]), "[prefixes]: unknown key(s) replies"),
    (lambda d: d.pop("process"), "the key 'process' is missing"),
])
def test_bad_rules_name_the_entry(change, message):
    data = _data()
    change(data)
    with pytest.raises(RulesError) as exc:
        parse_subject_rules(data, "subjects.toml")
    assert str(exc.value).startswith("subjects.toml: ")
    assert message in str(exc.value)


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(RulesError, match="does not exist"):
        load_subject_rules(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_subject_rules(bad)
