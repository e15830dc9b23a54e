//! PII detection and masking for training-data curation: finds e-mail addresses, phone numbers,
//! payment cards, IBANs, US SSNs, IP addresses, secrets, credential-bearing URLs and cue-introduced
//! person names, plus names, street addresses, places and organisations found by the learned tagger
//! ([`hone_ner`]), and replaces each with a typed placeholder such as `<EMAIL>`.
//!
//! Design notes:
//! - Every detector is a regex that proposes candidates plus a validator in code (Luhn, ISO 7064
//!   mod-97, SSN ranges, octet ranges, `Ipv6Addr` parsing, shape and context rules). Regexes use
//!   no Unicode word boundaries, so the lazy DFA never falls back to a slow engine.
//! - Cheap pre-checks (digit count, `@`, `://`, `:`, `=`, `-----BEGIN`) skip detectors that
//!   cannot match.
//! - Overlaps are resolved deterministically: longest span first, then kind priority
//!   (secret > url > email > iban > card > ssn > ip > phone > person > address > location > org),
//!   then earliest start.
//! - Hex hashes: a pure-hex run of 32+ chars is masked as a secret (API keys are often hex)
//!   unless one of the two preceding words is a hash cue (`commit`, `sha`, `sha256`, `md5`,
//!   `hash`, `checksum`, `digest`, `revision`, ...). Canonical UUIDs are never masked.
//! - Person names are found after cues (greetings, sign-offs, titles, self-introductions) by rules,
//!   and anywhere by the learned tagger; both need capitals, so lower-case names are missed. The
//!   tagger's spans pass the cue rules' stop words. `PiiDetector::new()` finds the default policy's
//!   types: every kind but the opt-in `Location` and `Org`.
//!
//! Unseparated national numbers are phones when they have a national shape: 11 digits `0[1-3789]…`
//! (UK-style: `07700900123`, `09066368327`) or 10 digits `NXXNXXXXXX` (North American: `4155550199`),
//! unless a cue (`order`, `ticket`, `#`…) or a currency is next to them, or the first eight digits are a
//! `yyyymmdd` date; other digit runs (ids, amounts, timestamps) stay unmasked.
//!
//! Known limitations: 7-digit local phone numbers (`555-0132`) are not phones; a 10-digit id without a
//! cue that has the North American shape is masked; a phone glued to a date by a single space can be missed; IBANs must be
//! uppercase; `I'm`/`I am`/`this is` need a two-word name; `password is x` (no `=`/`:`) is
//! missed, and `key: value` only counts when the value has a digit, symbol or inner capital;
//! `ssh://git@host` yields an e-mail span.

use regex::Regex;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

/// The category of a detected piece of personal or secret data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    Ip,
    Secret,
    Url,
    Person,
    Address,
    Location,
    Org,
}

impl PiiKind {
    /// Its bit in a detector's enabled set (declaration order, as in [`PiiKind::ALL`]).
    fn bit(self) -> u16 {
        1 << self as u16
    }

    /// The detector kind for a `[policy] pii_types` entry.
    pub fn from_type(t: hone_core::config::PiiType) -> PiiKind {
        use hone_core::config::PiiType as T;
        match t {
            T::Email => PiiKind::Email,
            T::Phone => PiiKind::Phone,
            T::Card => PiiKind::Card,
            T::Iban => PiiKind::Iban,
            T::Ssn => PiiKind::Ssn,
            T::Ip => PiiKind::Ip,
            T::Secret => PiiKind::Secret,
            T::Url => PiiKind::Url,
            T::Person => PiiKind::Person,
            T::Address => PiiKind::Address,
            T::Location => PiiKind::Location,
            T::Org => PiiKind::Org,
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [PiiKind; 12] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::Ip,
        PiiKind::Secret,
        PiiKind::Url,
        PiiKind::Person,
        PiiKind::Address,
        PiiKind::Location,
        PiiKind::Org,
    ];

    /// The kinds the learned tagger ([`hone_ner`]) finds.
    pub const LEARNED: [PiiKind; 4] = [
        PiiKind::Person,
        PiiKind::Address,
        PiiKind::Location,
        PiiKind::Org,
    ];

    /// The text that replaces a span of this kind when masking.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "<EMAIL>",
            PiiKind::Phone => "<PHONE>",
            PiiKind::Card => "<CARD>",
            PiiKind::Iban => "<IBAN>",
            PiiKind::Ssn => "<SSN>",
            PiiKind::Ip => "<IP>",
            PiiKind::Secret => "<SECRET>",
            PiiKind::Url => "<URL>",
            PiiKind::Person => "<PERSON>",
            PiiKind::Address => "<ADDRESS>",
            PiiKind::Location => "<LOCATION>",
            PiiKind::Org => "<ORG>",
        }
    }

    /// A short lowercase name, e.g. for reports.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
            PiiKind::Ssn => "ssn",
            PiiKind::Ip => "ip",
            PiiKind::Secret => "secret",
            PiiKind::Url => "url",
            PiiKind::Person => "person",
            PiiKind::Address => "address",
            PiiKind::Location => "location",
            PiiKind::Org => "org",
        }
    }

    /// Overlap priority: lower wins when two candidates have the same length.
    fn rank(self) -> u8 {
        match self {
            PiiKind::Secret => 0,
            PiiKind::Url => 1,
            PiiKind::Email => 2,
            PiiKind::Iban => 3,
            PiiKind::Card => 4,
            PiiKind::Ssn => 5,
            PiiKind::Ip => 6,
            PiiKind::Phone => 7,
            PiiKind::Person => 8,
            PiiKind::Address => 9,
            PiiKind::Location => 10,
            PiiKind::Org => 11,
        }
    }
}

/// One detected span. `start`/`end` are byte offsets and `char_start`/`char_end` are char
/// offsets into the original text; `end` and `char_end` are exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    pub char_start: usize,
    pub char_end: usize,
}

/// The result of masking: the new text and the spans (offsets into the original text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub text: String,
    pub spans: Vec<PiiSpan>,
}

impl Masked {
    /// Whether anything was masked.
    pub fn changed(&self) -> bool {
        !self.spans.is_empty()
    }

    /// How many spans of `kind` were masked.
    pub fn count(&self, kind: PiiKind) -> usize {
        self.spans.iter().filter(|s| s.kind == kind).count()
    }
}

/// A set of compiled detectors. Build once (it compiles ~15 regexes) and share: it is
/// `Send + Sync`; [`PiiDetector::only`] makes a cheap copy limited to some kinds.
#[derive(Clone)]
pub struct PiiDetector {
    /// Bit `i` set: kind `PiiKind::ALL[i]` is detected.
    enabled: u16,
    email: Regex,
    url: Regex,
    phone: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ssn_cue: Regex,
    ipv4: Regex,
    ipv6: Regex,
    secret_prefixed: Regex,
    bearer: Regex,
    private_key: Regex,
    kv_secret: Regex,
    entropy: Regex,
    person: Regex,
}

impl Default for PiiDetector {
    fn default() -> Self {
        Self::new()
    }
}

static DETECTOR: LazyLock<PiiDetector> = LazyLock::new(PiiDetector::new);

/// Which learned tagger masks names, addresses, places and organisations under `types`, as recorded in
/// a dataset version (`hone-ner <fingerprint prefix>`); `None` when `types` names none of them.
pub fn tagger_id(types: &[hone_core::config::PiiType]) -> Option<String> {
    types
        .iter()
        .any(|&t| PiiKind::LEARNED.contains(&PiiKind::from_type(t)))
        .then(|| format!("hone-ner {}", &hone_ner::default_fingerprint()[..16]))
}

/// Whether the learned tagger still has to be trained on this machine (first use, about 8 s), so that
/// a caller can say so before [`prepare_tagger`] does it.
pub fn tagger_needs_training() -> bool {
    !hone_ner::default_is_cached()
}

/// Loads or trains the learned tagger now rather than at the first text that needs it.
pub fn prepare_tagger() {
    let _ = hone_ner::shared();
}

/// Masks `text` with a process-wide shared detector.
pub fn mask_text(text: &str) -> String {
    DETECTOR.mask(text).text
}

#[derive(Clone, Copy)]
struct Cand {
    kind: PiiKind,
    start: usize,
    end: usize,
}

/// Cheap one-pass statistics used to skip detectors.
struct Scan {
    digits: usize,
    at: bool,
    colons: usize,
    eq: bool,
    dot: bool,
    dash: bool,
}

fn scan(text: &str) -> Scan {
    let mut s = Scan {
        digits: 0,
        at: false,
        colons: 0,
        eq: false,
        dot: false,
        dash: false,
    };
    for &b in text.as_bytes() {
        match b {
            b'0'..=b'9' => s.digits += 1,
            b'@' => s.at = true,
            b':' => s.colons += 1,
            b'=' => s.eq = true,
            b'.' => s.dot = true,
            b'-' => s.dash = true,
            _ => {}
        }
    }
    s
}

fn re(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(r) => r,
        Err(e) => panic!("invalid built-in PII regex {pattern:?}: {e}"),
    }
}

const NAME_TOKEN: &str = r"\p{Lu}(?:[\p{Ll}\p{Mn}]+(?:\p{Lu}[\p{Ll}\p{Mn}]+)?|['’]\p{Lu}[\p{Ll}\p{Mn}]+)(?:-\p{Lu}[\p{Ll}\p{Mn}]+)*";
const NAME_PARTICLES: &str = r"(?:van|von|de|da|del|der|di|du|la|le|dos|das|ter)";
const TITLES: &str = r"(?:Mrs|Mr|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Sra|Srta|Sr|Mme|Mlle|Monsieur|Madame|Señora|Señor|M\.)";
const SIGNOFF_SEP_REQUIRED: &str = r"(?i:mit freundlichen grüßen|freundliche grüße|viele grüße|liebe grüße|beste grüße|best regards|kind regards|warm regards|warmest regards|best wishes|yours sincerely|yours truly|sincerely|regards|best|grüße|gruß|un saludo|saludos|atentamente|cordialement|bien à vous|amicalement|bises|mfg|br)(?:[ \t]*[,!.\-–—][ \t]*(?:\r?\n[ \t]*){0,2}|[ \t]*(?:\r?\n[ \t]*){1,2})";
const SIGNOFF_SEP_OPTIONAL: &str = r"(?i:many thanks|thanks again|thank you|thanks|thx|cheers|vielen dank|danke|muchas gracias|gracias|merci)(?:[ \t]*[,!.\-–—][ \t]*(?:\r?\n[ \t]*){0,2}|[ \t]*(?:\r?\n[ \t]*){1,2}|[ \t]+)";
const GREETINGS: &str = r"(?i:good morning|good afternoon|good evening|hello|hi|hey|dear|greetings|hallo|liebe|lieber|sehr geehrte|sehr geehrter|guten tag|moin|servus|hola|querida|querido|estimada|estimado|buenos días|buenas tardes|bonjour|bonsoir|salut|chère|cher|coucou)";
const INTRO_ONE: &str = r"(?i:my name is|my name's|call me|me llamo|mi nombre es|je m'appelle|je m’appelle|mon nom est|ich heiße|ich heisse|mein name ist)";
const INTRO_TWO: &str = r"(?i:i'm|i’m|i am|this is|ich bin|je suis|soy)";

/// Capitalised words that follow cues but are not names.
const STOPWORDS: &[&str] = &[
    // Addressees that are not names (`Dear Voucher Holder`, `Hey Boys`, `Hi Dear Call me`).
    "Voucher",
    "Subscriber",
    "Welcome",
    "Call",
    "Boys",
    "Girls",
    "Guys",
    "Mobile",
    "Winner",
    "Holder",
    "User",
    "Member",
    "Friend",
    "Friends",
    "Dear",
    "Valued",
    "Player",
    "I",
    "A",
    "An",
    "The",
    "Team",
    "Teams",
    "Support",
    "Customer",
    "Customers",
    "Service",
    "Services",
    "Sir",
    "Sirs",
    "Madam",
    "Madame",
    "All",
    "Everyone",
    "Everybody",
    "There",
    "Sad",
    "Stuck",
    "Sorry",
    "Happy",
    "Glad",
    "Here",
    "Again",
    "Thanks",
    "Thank",
    "Regards",
    "Best",
    "Hi",
    "Hello",
    "Hey",
    "Dear",
    "Good",
    "Morning",
    "Afternoon",
    "Evening",
    "Night",
    "Day",
    "Folks",
    "Guys",
    "Friends",
    "Friend",
    "Colleagues",
    "Valued",
    "Hiring",
    "Manager",
    "Admin",
    "Administrator",
    "Sales",
    "Billing",
    "Account",
    "Accounts",
    "Accounting",
    "Department",
    "Staff",
    "Company",
    "Please",
    "Not",
    "New",
    "Just",
    "So",
    "Very",
    "Really",
    "Still",
    "Also",
    "Quite",
    "Extremely",
    "Completely",
    "Totally",
    "Absolutely",
    "Now",
    "Back",
    "Sure",
    "Well",
    "Ok",
    "Okay",
    "Fine",
    "Great",
    "World",
    "Unable",
    "Trying",
    "Writing",
    "Looking",
    "Having",
    "Getting",
    "Going",
    "Waiting",
    "Contacting",
    "Reaching",
    "Following",
    "Afraid",
    "Confused",
    "Frustrated",
    "Disappointed",
    "Angry",
    "Interested",
    "Done",
    "Ready",
    "Available",
    "Out",
    "Unhappy",
    "Excited",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Mr",
    "Mrs",
    "Ms",
    "Miss",
    "Mx",
    "Dr",
    "Prof",
    "You",
    "We",
    "They",
    "It",
    "This",
    "That",
    "These",
    "Those",
    "Your",
    "My",
    "Our",
    "To",
    "From",
    "For",
    "With",
    "About",
    "In",
    "On",
    "At",
    "Of",
    "And",
    "Or",
    "But",
    "If",
    "As",
    "Is",
    "Are",
    "Was",
    "Be",
    "Am",
    "No",
    "Yes",
    "Help",
    "Desk",
    "Helpdesk",
    "Care",
    "Product",
    "Bank",
    "Google",
    "Alexa",
    "Siri",
    "Herr",
    "Frau",
    "Kunde",
    "Kundin",
    "Kundenservice",
    "Damen",
    "Herren",
    "Leute",
    "Alle",
    "Zusammen",
    "Grüße",
    "Gruß",
    "Equipo",
    "Cliente",
    "Señor",
    "Señora",
    "Todos",
    "Amigos",
    "Saludos",
    "Monsieur",
    "Équipe",
    "Client",
    "Tous",
    "Hallo",
    "Hola",
    "Bonjour",
    "Merci",
    "Gracias",
    "Danke",
    "Cordialement",
    "Vielen",
    "Dank",
    "Liebe",
    "Lieber",
    "Sehr",
    "Mit",
    // Question and function words that follow a greeting (`Good morning, How do I…`).
    "How",
    "What",
    "Why",
    "When",
    "Where",
    "Who",
    "Which",
    "Can",
    "Could",
    "Would",
    "Do",
    "Does",
    "Did",
    "Have",
    "Has",
    "Need",
    "Want",
    "Any",
    "Some",
    "Im",
    "Me",
    "Should",
    "Quick",
    "Question",
    "Urgent",
    // Words that start a message after `Hi, ` (`Hi, Today i have…`, `Hey, Ordered a while back`).
    "Today",
    "Yesterday",
    "Yesterdays",
    "Tomorrow",
    "Last",
    "Next",
    "One",
    "Ordered",
    "Received",
    "Got",
    "Since",
    "After",
    "Before",
    "Recently",
];

const NUMBER_CUES: &[&str] = &[
    "order",
    "orders",
    "purchase",
    "purchases",
    "ordernumber",
    "ticket",
    "invoice",
    "inv",
    "ref",
    "reference",
    "case",
    "tracking",
    "batch",
    "account",
    "acct",
    "booking",
    "confirmation",
    "transaction",
    "txn",
    "receipt",
    "parcel",
    "shipment",
    "claim",
    "sku",
    "serial",
    "po",
    "id",
    "item",
    "policy",
    "member",
    "membership",
    "contract",
    "version",
    "ver",
    "build",
    "release",
    "patch",
    "kb",
    "bestellung",
    "bestellnummer",
    "rechnung",
    "rechnungsnummer",
    "auftrag",
    "kundennummer",
    "pedido",
    "factura",
    "referencia",
    "commande",
    "facture",
    "référence",
    "dossier",
];

const VERSION_CUES: &[&str] = &["v", "version", "ver", "build", "release", "firmware", "fw"];

const HASH_CUES: &[&str] = &[
    "commit",
    "sha",
    "sha1",
    "sha-1",
    "sha256",
    "sha-256",
    "sha512",
    "md5",
    "hash",
    "checksum",
    "digest",
    "revision",
    "rev",
    "etag",
    "fingerprint",
    "git",
    "head",
];

const URL_SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "pwd",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "auth",
];

/// (country, IBAN length) for the countries in the IBAN registry we know about.
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

impl PiiDetector {
    /// Compiles all detectors.
    pub fn new() -> Self {
        let name = format!(
            r"{t}(?:[ \t]+(?:{p}[ \t]+){{0,2}}{t}){{0,2}}",
            t = NAME_TOKEN,
            p = NAME_PARTICLES
        );
        let person = format!(
            r"(?:(?P<sb>{sb})|(?P<sa>{sa})|(?P<g>{g}[ \t]*,?[ \t]+(?:{ti}\.?[ \t]+)?)|(?P<i1>{i1}[ \t]+)|(?P<i2>{i2}[ \t]+)|(?P<t>{ti}\.?[ \t]+))(?P<name>{name})",
            sb = SIGNOFF_SEP_REQUIRED,
            sa = SIGNOFF_SEP_OPTIONAL,
            g = GREETINGS,
            ti = TITLES,
            i1 = INTRO_ONE,
            i2 = INTRO_TWO,
            name = name
        );
        PiiDetector {
            email: re(
                r"[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?)*\.\p{L}{2,}",
            ),
            url: re(r#"(?i)(?-u:\b)[a-z][a-z0-9+.\-]{1,15}://[^\s<>"'`\[\]{}|\\^]+"#),
            phone: re(
                r"(?:\+[ ]?)?(?:\([0-9]{1,5}\)|[0-9]+)(?:(?:[ .\-]|[ ]-[ ])?(?:\([0-9]{1,5}\)|[0-9]+))*",
            ),
            card: re(r"[0-9](?:[ \-]?[0-9]){12,18}"),
            iban: re(r"[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]){10,32}"),
            ssn: re(r"[0-9]{3}-[0-9]{2}-[0-9]{4}"),
            ssn_cue: re(
                r"(?i)(?-u:\b)(?:ssn|social[ \t]+security(?:[ \t]+(?:number|no\.?|num|#))?)[^0-9\n]{0,12}?([0-9]{3}[ \-]?[0-9]{2}[ \-]?[0-9]{4})",
            ),
            ipv4: re(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"),
            ipv6: re(
                r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-f]{1,4})?",
            ),
            secret_prefixed: re(
                r"(?-u:\b)(?:sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|xox[baprs]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})",
            ),
            bearer: re(r"(?i)(?-u:\b)bearer[ \t]+([A-Za-z0-9\-._~+/]{16,}=*)"),
            private_key: re(
                r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s]*)",
            ),
            kv_secret: re(
                r#"(?i)(password|passwd|passwort|pwd|passcode|pass|client[_-]?secret|secret[_-]?key|secret|api[_-]?key|apikey|access[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|private[_-]?key|contraseña|mot de passe)["']?[ \t]*([=:])[ \t]*["']?([^\s"'&,;<>]+)"#,
            ),
            entropy: re(r"[A-Za-z0-9_+/\-]{32,}={0,2}"),
            person: re(&person),
            // The default policy's types: every kind except the opt-in LOCATION and ORG.
            enabled: hone_core::config::PiiType::DEFAULT
                .iter()
                .fold(0, |m, &t| m | PiiKind::from_type(t).bit()),
        }
    }

    /// The same detectors, finding only `kinds` (`[policy] pii_types`). A kind left out never shadows
    /// one that is kept: candidates are filtered before overlaps are resolved.
    pub fn only(&self, kinds: &[PiiKind]) -> PiiDetector {
        PiiDetector {
            enabled: kinds.iter().fold(0, |m, k| m | k.bit()),
            ..self.clone()
        }
    }

    /// The detector for a policy's `pii_types`.
    pub fn for_types(&self, types: &[hone_core::config::PiiType]) -> PiiDetector {
        let kinds: Vec<PiiKind> = types.iter().map(|&t| PiiKind::from_type(t)).collect();
        self.only(&kinds)
    }

    /// Finds PII spans: sorted by start, non-overlapping, offsets into `text`.
    pub fn detect(&self, text: &str) -> Vec<PiiSpan> {
        let mut cands: Vec<Cand> = Vec::new();
        if text.is_empty() {
            return Vec::new();
        }
        let sc = scan(text);
        let mut raw_urls: Vec<(usize, usize)> = Vec::new();
        let mut blocked: Vec<(usize, usize)> = Vec::new();

        if text.contains("://") {
            self.detect_url(text, &mut cands, &mut raw_urls);
        }
        if sc.at {
            self.detect_email(text, &mut cands);
        }
        if sc.digits >= 2 {
            self.detect_iban(text, &mut cands, &mut blocked);
        }
        if sc.digits >= 13 {
            self.detect_card(text, &mut cands);
        }
        if sc.digits >= 9 {
            self.detect_ssn(text, &mut cands);
        }
        if sc.digits >= 4 && sc.dot {
            self.detect_ipv4(text, &mut cands);
        }
        if sc.colons >= 2 {
            self.detect_ipv6(text, &mut cands);
        }
        if sc.digits >= 7 {
            self.detect_phone(text, &mut cands);
        }
        self.detect_secret(text, &sc, &raw_urls, &mut cands);
        self.detect_person(text, &mut cands);
        self.detect_learned(text, &mut cands);

        if !blocked.is_empty() {
            cands.retain(|c| {
                !(matches!(
                    c.kind,
                    PiiKind::Card | PiiKind::Phone | PiiKind::Ssn | PiiKind::Ip
                ) && blocked.iter().any(|&(s, e)| c.start < e && s < c.end))
            });
        }
        cands.retain(|c| self.enabled & c.kind.bit() != 0);
        let chosen = resolve(cands);
        with_char_offsets(text, chosen)
    }

    /// Replaces every detected span by its kind's placeholder.
    pub fn mask(&self, text: &str) -> Masked {
        let spans = self.detect(text);
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for s in &spans {
            out.push_str(&text[last..s.start]);
            out.push_str(s.kind.placeholder());
            last = s.end;
        }
        out.push_str(&text[last..]);
        Masked { text: out, spans }
    }

    /// The kinds this detector finds, in declaration order.
    pub fn kinds(&self) -> Vec<PiiKind> {
        PiiKind::ALL
            .into_iter()
            .filter(|k| self.enabled & k.bit() != 0)
            .collect()
    }

    /// Whether this detector uses the learned tagger (any of its kinds enabled).
    pub fn uses_tagger(&self) -> bool {
        PiiKind::LEARNED.iter().any(|k| self.enabled & k.bit() != 0)
    }

    /// Names, addresses, places and organisations from the learned tagger (trained or loaded on first
    /// use; see [`hone_ner::shared`]). Skipped when none of its kinds is enabled or the text has no
    /// letters.
    fn detect_learned(&self, text: &str, out: &mut Vec<Cand>) {
        if !self.uses_tagger() || !text.chars().any(char::is_alphabetic) {
            return;
        }
        for (start, end, e) in hone_ner::shared().spans(text) {
            // The cue rules' stop words (addressees, sentence starts, support words) are never names,
            // whoever finds them.
            if e == hone_ner::Entity::Person
                && text[start..end]
                    .split([' ', '\t'])
                    .any(|w| STOPWORDS.contains(&w))
            {
                continue;
            }
            let kind = match e {
                hone_ner::Entity::Person => PiiKind::Person,
                hone_ner::Entity::Address => PiiKind::Address,
                hone_ner::Entity::Location => PiiKind::Location,
                hone_ner::Entity::Org => PiiKind::Org,
            };
            out.push(Cand { kind, start, end });
        }
    }

    fn detect_url(&self, text: &str, out: &mut Vec<Cand>, raw: &mut Vec<(usize, usize)>) {
        for m in self.url.find_iter(text) {
            let s = m.start();
            let trimmed = m
                .as_str()
                .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'']);
            let e = s + trimmed.len();
            raw.push((s, e));
            if prev_char(text, s).is_some_and(|c| c.is_alphanumeric()) {
                continue;
            }
            if url_is_sensitive(trimmed) {
                out.push(Cand {
                    kind: PiiKind::Url,
                    start: s,
                    end: e,
                });
            }
        }
    }

    fn detect_email(&self, text: &str, out: &mut Vec<Cand>) {
        for m in self.email.find_iter(text) {
            let mut s = m.start();
            let bytes = text.as_bytes();
            while s < m.end() && bytes[s] == b'.' {
                s += 1;
            }
            let local_end = match text[s..m.end()].find('@') {
                Some(i) => s + i,
                None => continue,
            };
            if local_end == s || bytes[local_end - 1] == b'.' {
                continue;
            }
            out.push(Cand {
                kind: PiiKind::Email,
                start: s,
                end: m.end(),
            });
        }
    }

    fn detect_iban(&self, text: &str, out: &mut Vec<Cand>, blocked: &mut Vec<(usize, usize)>) {
        let mut pos = 0;
        while let Some(m) = self.iban.find_at(text, pos) {
            let s = m.start();
            pos = s + 2;
            if prev_char(text, s).is_some_and(is_word) {
                continue;
            }
            let cand = m.as_str();
            let chars: Vec<(u8, usize)> = cand
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b != b' ')
                .map(|(i, b)| (b, s + i + 1))
                .collect();
            let known = IBAN_LENGTHS
                .iter()
                .find(|(cc, _)| cc.as_bytes() == &cand.as_bytes()[..2])
                .map(|&(_, l)| l);
            let (lo, hi) = match known {
                Some(l) => (l, l),
                None => (15, 34),
            };
            let mut len = hi.min(chars.len());
            while len >= lo {
                let e = chars[len - 1].1;
                let piece = &text[s..e];
                if iban_grouping_ok(piece) && !next_char(text, e).is_some_and(is_word) {
                    let compact: Vec<u8> = chars[..len].iter().map(|c| c.0).collect();
                    if iban_mod97(&compact) == 1 {
                        out.push(Cand {
                            kind: PiiKind::Iban,
                            start: s,
                            end: e,
                        });
                        pos = e;
                        break;
                    } else if known.is_some() {
                        blocked.push((s, e));
                    }
                }
                len -= 1;
            }
        }
    }

    fn detect_card(&self, text: &str, out: &mut Vec<Cand>) {
        let mut pos = 0;
        while let Some(m) = self.card.find_at(text, pos) {
            let s = m.start();
            pos = m.end();
            if bad_number_prefix(text, s) {
                continue;
            }
            let seps: Vec<usize> = m
                .as_str()
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b' ' || b == b'-')
                .map(|(i, _)| s + i)
                .collect();
            let ends = std::iter::once(m.end()).chain(seps.into_iter().rev());
            for e in ends {
                if card_ok(text, s, e) {
                    out.push(Cand {
                        kind: PiiKind::Card,
                        start: s,
                        end: e,
                    });
                    pos = e;
                    break;
                }
            }
        }
    }

    fn detect_ssn(&self, text: &str, out: &mut Vec<Cand>) {
        for m in self.ssn.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            if bad_number_prefix(text, s) || bad_number_suffix(text, e) {
                continue;
            }
            if ssn_valid(m.as_str()) {
                out.push(Cand {
                    kind: PiiKind::Ssn,
                    start: s,
                    end: e,
                });
            }
        }
        for caps in self.ssn_cue.captures_iter(text) {
            let Some(g) = caps.get(1) else { continue };
            if bad_number_suffix(text, g.end()) || prev_char(text, g.start()).is_some_and(is_word) {
                continue;
            }
            let seps: Vec<u8> = g.as_str().bytes().filter(|b| !b.is_ascii_digit()).collect();
            if seps.len() == 1 || seps.windows(2).any(|w| w[0] != w[1]) {
                continue;
            }
            if ssn_valid(g.as_str()) {
                out.push(Cand {
                    kind: PiiKind::Ssn,
                    start: g.start(),
                    end: g.end(),
                });
            }
        }
    }

    fn detect_ipv4(&self, text: &str, out: &mut Vec<Cand>) {
        for m in self.ipv4.find_iter(text) {
            let (s, e) = (m.start(), m.end());
            if prev_char(text, s).is_some_and(|c| is_word(c) || c == '.') {
                continue;
            }
            if let Some(n) = next_char(text, e) {
                if is_word(n) {
                    continue;
                }
                if n == '.' && next_char(text, e + 1).is_some_and(|c| c.is_ascii_digit()) {
                    continue;
                }
            }
            if !m
                .as_str()
                .split('.')
                .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255))
            {
                continue;
            }
            if preceding_words(text, s, 2)
                .iter()
                .any(|w| VERSION_CUES.contains(&w.as_str()))
            {
                continue;
            }
            out.push(Cand {
                kind: PiiKind::Ip,
                start: s,
                end: e,
            });
        }
    }

    fn detect_ipv6(&self, text: &str, out: &mut Vec<Cand>) {
        for m in self.ipv6.find_iter(text) {
            let s = m.start();
            let mut c = m.as_str();
            let mut trimmed = false;
            if c.ends_with(':') && !c.ends_with("::") {
                c = &c[..c.len() - 1];
                trimmed = true;
            }
            let e = s + c.len();
            if c.len() < 3 || prev_char(text, s).is_some_and(|p| is_word(p) || p == ':' || p == '.')
            {
                continue;
            }
            if !trimmed
                && next_char(text, e).is_some_and(|n| {
                    is_word(n)
                        || (n == ':'
                            && next_char(text, e + 1).is_some_and(|c| is_word(c) || c == ':'))
                })
            {
                continue;
            }
            let has_digit = c.bytes().any(|b| b.is_ascii_digit());
            let groups = c.split(':').filter(|g| !g.is_empty()).count();
            if !has_digit && groups < 3 {
                continue;
            }
            if c.parse::<Ipv6Addr>().is_ok() {
                out.push(Cand {
                    kind: PiiKind::Ip,
                    start: s,
                    end: e,
                });
            }
        }
    }

    fn detect_phone(&self, text: &str, out: &mut Vec<Cand>) {
        let mut pos = 0;
        while let Some(m) = self.phone.find_at(text, pos) {
            pos = m.end();
            if phone_ok(text, m.start(), m.end()) {
                out.push(Cand {
                    kind: PiiKind::Phone,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }

    fn detect_secret(&self, text: &str, sc: &Scan, urls: &[(usize, usize)], out: &mut Vec<Cand>) {
        let push = |out: &mut Vec<Cand>, s: usize, e: usize| {
            if s < e {
                out.push(Cand {
                    kind: PiiKind::Secret,
                    start: s,
                    end: e,
                });
            }
        };
        if sc.dash && text.contains("-----BEGIN") {
            for m in self.private_key.find_iter(text) {
                let e = m.start() + m.as_str().trim_end().len();
                push(out, m.start(), e);
            }
        }
        if sc.digits == 0 {
            return;
        }
        for m in self.secret_prefixed.find_iter(text) {
            if next_char(text, m.end()).is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            push(out, m.start(), m.end());
        }
        for caps in self.bearer.captures_iter(text) {
            let Some(g) = caps.get(1) else { continue };
            let tok = g.as_str().trim_end_matches('.');
            if tok.len() >= 16
                && tok.bytes().any(|b| b.is_ascii_digit())
                && tok.bytes().any(|b| b.is_ascii_alphabetic())
            {
                push(out, g.start(), g.start() + tok.len());
            }
        }
        if sc.eq || sc.colons > 0 {
            for caps in self.kv_secret.captures_iter(text) {
                let (Some(key), Some(sep), Some(val)) = (caps.get(1), caps.get(2), caps.get(3))
                else {
                    continue;
                };
                if prev_char(text, key.start()).is_some_and(|c| c.is_alphabetic()) {
                    continue;
                }
                let v = val
                    .as_str()
                    .trim_end_matches(['.', '!', '?', ')', ']', '}', ':']);
                let ok = if sep.as_str() == "=" {
                    v.chars().count() >= 3
                } else {
                    looks_secretish(v)
                };
                if ok && !v.contains("://") {
                    push(out, val.start(), val.start() + v.len());
                }
            }
        }
        if text.len() >= 32 {
            for m in self.entropy.find_iter(text) {
                let (s, e) = (m.start(), m.end());
                if urls.iter().any(|&(us, ue)| s < ue && us < e) {
                    continue;
                }
                if entropy_token_ok(text, s, m.as_str()) {
                    push(out, s, e);
                }
            }
        }
    }

    fn detect_person(&self, text: &str, out: &mut Vec<Cand>) {
        let mut pos = 0;
        while pos < text.len() {
            let Some(caps) = self.person.captures_at(text, pos) else {
                break;
            };
            let (Some(m), Some(name)) = (caps.get(0), caps.name("name")) else {
                break;
            };
            let first_len = text[m.start()..].chars().next().map_or(1, char::len_utf8);
            let back = prev_char(text, name.start()).map_or(0, char::len_utf8);
            let retry = (name.start() - back).max(m.start() + first_len);
            let mut accepted = None;
            if !prev_char(text, m.start()).is_some_and(char::is_alphanumeric)
                && !next_char(text, name.end()).is_some_and(char::is_alphanumeric)
            {
                let min_tokens = if caps.name("i2").is_some() { 2 } else { 1 };
                // `thanks. Got a surprise`: after a sign-off that ends a sentence, a capitalised word
                // followed by more of the sentence starts that sentence; a signature ends its line.
                let signoff = caps.name("sa").or_else(|| caps.name("sb"));
                let continues = text[name.end()..]
                    .strip_prefix(' ')
                    .and_then(|r| r.chars().next())
                    .is_some_and(char::is_lowercase);
                let sentence_goes_on =
                    signoff.is_some_and(|c| c.as_str().contains(['.', '!'])) && continues;
                if !sentence_goes_on && let Some(len) = trim_name(name.as_str(), min_tokens) {
                    accepted = Some((name.start(), name.start() + len));
                }
            }
            match accepted {
                Some((s, e)) => {
                    out.push(Cand {
                        kind: PiiKind::Person,
                        start: s,
                        end: e,
                    });
                    pos = e;
                }
                None => pos = retry,
            }
        }
    }
}

/// Longest first, then kind priority, then earliest start; greedily keep non-overlapping spans.
fn resolve(mut cands: Vec<Cand>) -> Vec<Cand> {
    cands.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.kind.rank().cmp(&b.kind.rank()))
            .then(a.start.cmp(&b.start))
    });
    let mut taken: BTreeMap<usize, Cand> = BTreeMap::new();
    for c in cands {
        if c.start >= c.end {
            continue;
        }
        if let Some((_, prev)) = taken.range(..c.end).next_back()
            && prev.end > c.start
        {
            continue;
        }
        taken.insert(c.start, c);
    }
    taken.into_values().collect()
}

fn with_char_offsets(text: &str, spans: Vec<Cand>) -> Vec<PiiSpan> {
    let mut byte = 0;
    let mut chars = 0;
    let mut out = Vec::with_capacity(spans.len());
    for c in spans {
        chars += text[byte..c.start].chars().count();
        let char_start = chars;
        chars += text[c.start..c.end].chars().count();
        byte = c.end;
        out.push(PiiSpan {
            kind: c.kind,
            start: c.start,
            end: c.end,
            char_start,
            char_end: chars,
        });
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i)?.chars().next_back()
}

fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..)?.chars().next()
}

/// Up to `n` lowercase words right before `start`, nearest first, stopping at clause
/// punctuation.
fn preceding_words(text: &str, start: usize, n: usize) -> Vec<String> {
    let mut from = start.saturating_sub(40);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let seg = &text[from..start];
    let seg = match seg.rfind([',', ';', '!', '?', '(', ')', '\n']) {
        Some(i) => &seg[i + 1..],
        None => seg,
    };
    seg.split_whitespace()
        .rev()
        .take(n)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-')
                .to_lowercase()
        })
        .collect()
}

/// A number may not continue a word or another number (`ab12`, `12-34`, `1.2`).
fn bad_number_prefix(text: &str, s: usize) -> bool {
    match prev_char(text, s) {
        None => false,
        Some(p) if is_word(p) => true,
        Some('-' | '.' | '/' | ',' | '+') => {
            prev_char(text, s - 1).is_some_and(char::is_alphanumeric)
        }
        _ => false,
    }
}

fn bad_number_suffix(text: &str, e: usize) -> bool {
    match next_char(text, e) {
        None => false,
        Some(n) if is_word(n) => true,
        Some('-' | '.' | '/' | ',' | ':') => {
            next_char(text, e + 1).is_some_and(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn card_ok(text: &str, s: usize, e: usize) -> bool {
    let cand = &text[s..e];
    let digits: Vec<u8> = cand
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    if !(13..=19).contains(&digits.len()) || !(2..=6).contains(&digits[0]) {
        return false;
    }
    if let Some(sep) = cand.bytes().find(|b| !b.is_ascii_digit()) {
        if cand.bytes().any(|b| !b.is_ascii_digit() && b != sep) {
            return false;
        }
        let groups: Vec<usize> = cand.split(sep as char).map(str::len).collect();
        let n = groups.len();
        let regular =
            n >= 3 && groups[..n - 1].iter().all(|&g| g == 4) && (1..=4).contains(&groups[n - 1]);
        if !(regular || matches!(groups.as_slice(), [4, 6, 5] | [4, 6, 4])) {
            return false;
        }
    }
    !bad_number_suffix(text, e) && luhn(&digits)
}

fn iban_grouping_ok(piece: &str) -> bool {
    if !piece.contains(' ') {
        return true;
    }
    let groups: Vec<&str> = piece.split(' ').collect();
    let n = groups.len();
    groups[..n - 1].iter().all(|g| g.len() == 4) && (1..=4).contains(&groups[n - 1].len())
}

fn iban_mod97(compact: &[u8]) -> u32 {
    let mut r = 0u32;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        if b.is_ascii_digit() {
            r = (r * 10 + u32::from(b - b'0')) % 97;
        } else if b.is_ascii_uppercase() {
            r = (r * 100 + u32::from(b - b'A' + 10)) % 97;
        } else {
            return 0;
        }
    }
    r
}

fn ssn_valid(s: &str) -> bool {
    let d: Vec<u32> = s
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    if d.len() != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn url_is_sensitive(u: &str) -> bool {
    let after = match u.find("://") {
        Some(i) => &u[i + 3..],
        None => return false,
    };
    let auth_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let auth = &after[..auth_end];
    if let Some(at) = auth.rfind('@') {
        let userinfo = &auth[..at];
        if let Some(c) = userinfo.find(':')
            && c > 0
            && c + 1 < userinfo.len()
        {
            return true;
        }
    }
    let rest = &after[auth_end..];
    let Some(q) = rest.find(['?', '#']) else {
        return false;
    };
    rest[q + 1..].split(['&', ';', '#', '?']).any(|kv| {
        kv.split_once('=').is_some_and(|(k, v)| {
            !v.is_empty() && URL_SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str())
        })
    })
}

fn looks_secretish(v: &str) -> bool {
    v.chars().count() >= 6
        && (v.bytes().any(|b| b.is_ascii_digit())
            || v.chars().any(|c| !c.is_alphanumeric())
            || v.chars().skip(1).any(char::is_uppercase))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn entropy_token_ok(text: &str, start: usize, tok: &str) -> bool {
    let core = tok.trim_end_matches('=');
    if core.len() < 32
        || !core.bytes().any(|b| b.is_ascii_digit())
        || !core.bytes().any(|b| b.is_ascii_alphabetic())
        || is_uuid(core)
    {
        return false;
    }
    if core.bytes().all(|b| b.is_ascii_hexdigit())
        && preceding_words(text, start, 2)
            .iter()
            .any(|w| HASH_CUES.contains(&w.as_str()))
    {
        return false;
    }
    let wordy = core
        .split(['_', '-', '/', '+'])
        .filter(|s| s.len() >= 4 && s.bytes().all(|b| b.is_ascii_lowercase()))
        .count();
    if wordy >= 2 || camel_coverage(core) * 10 >= core.len() * 7 {
        return false;
    }
    // A path of short word-like segments (`150p/MsgrcvdHG/Suite342/2Lands/Row/W1J6HL`, an address in
    // SMS spam): random tokens rarely hold four slashes, and their segments are not words.
    let segments: Vec<&str> = core.split('/').collect();
    let has_word = |seg: &str| {
        let b = seg.as_bytes();
        b.windows(3).any(|w| {
            w[0].is_ascii_uppercase() && w[1].is_ascii_lowercase() && w[2].is_ascii_lowercase()
        }) || b.windows(4).any(|w| w.iter().all(u8::is_ascii_lowercase))
    };
    if segments.len() >= 5 && segments.iter().filter(|g| has_word(g)).count() * 2 >= segments.len()
    {
        return false;
    }
    // Words run together (`50pmmorefrommobile2Bremoved-Moby…`): ten lowercase letters in a row are
    // about 0.4% likely anywhere in a random 40-character token.
    let longest_lower = core
        .split(|c: char| !c.is_ascii_lowercase())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_lower >= 10 {
        return false;
    }
    let mut counts = [0u32; 128];
    for b in core.bytes() {
        counts[usize::from(b & 0x7f)] += 1;
    }
    let n = core.len() as f64;
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    h >= 3.0
}

/// Bytes covered by identifier-like words (`Word`, or `word` at a segment start) of 4+ letters,
/// as in `src/components/UserProfile2Panel`; in random tokens they cover far less than 70%.
fn camel_coverage(tok: &str) -> usize {
    let b = tok.as_bytes();
    let mut covered = 0;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let segment_start = i == 0 || matches!(b[i - 1], b'/' | b'_' | b'-' | b'+');
        if b[i].is_ascii_uppercase() || (segment_start && b[i].is_ascii_lowercase()) {
            i += 1;
            while i < b.len() && b[i].is_ascii_lowercase() {
                i += 1;
            }
            if i - start >= 4 {
                covered += i - start;
            }
        } else {
            i += 1;
        }
    }
    covered
}

fn trim_name(name: &str, min_tokens: usize) -> Option<usize> {
    let mut end = 0;
    let mut n = 0;
    let mut off = 0;
    for w in name.split([' ', '\t']) {
        let ws = off;
        off += w.len() + 1;
        if w.is_empty() || w.starts_with(char::is_lowercase) {
            continue;
        }
        if STOPWORDS.contains(&w) {
            break;
        }
        n += 1;
        end = ws + w.len();
    }
    (n >= min_tokens).then_some(end)
}

/// Digit groups of a phone candidate plus their separators.
struct PhoneShape<'a> {
    groups: Vec<&'a str>,
    seps: Vec<u8>,
    paren: bool,
}

fn phone_shape(cand: &str) -> PhoneShape<'_> {
    let b = cand.as_bytes();
    let mut i = 0;
    let mut shape = PhoneShape {
        groups: Vec::new(),
        seps: Vec::new(),
        paren: false,
    };
    let mut pending: Option<u8> = None;
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' => {
                let st = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if !shape.groups.is_empty() {
                    shape.seps.push(pending.take().unwrap_or(b'_'));
                }
                pending = None;
                shape.groups.push(&cand[st..i]);
                continue;
            }
            b'(' | b')' => shape.paren = true,
            b'+' => {}
            c => {
                pending = Some(match pending {
                    Some(p) if c == b' ' => p,
                    _ => c,
                });
            }
        }
        i += 1;
    }
    shape
}

fn is_date_like(groups: &[&str], seps: &[u8]) -> bool {
    if groups.len() < 3 || seps[0] != seps[1] {
        return false;
    }
    let v: Vec<u32> = groups[..3]
        .iter()
        .map(|g| g.parse().unwrap_or(99_999))
        .collect();
    let l: Vec<usize> = groups[..3].iter().map(|g| g.len()).collect();
    let md = |a: u32, b: u32| (1..=12).contains(&a) && (1..=31).contains(&b);
    if l[0] == 4 && l[1] <= 2 && l[2] <= 2 {
        return md(v[1], v[2]);
    }
    let short_year = l[2] == 2 && groups.len() == 3 && seps[0] != b' ';
    if l[0] <= 2 && l[1] <= 2 && (l[2] == 4 || short_year) {
        return md(v[1], v[0]) || md(v[0], v[1]);
    }
    false
}

/// A phone number written without separators: 11 digits `0[1-3789]…` (UK-style national), 12 digits
/// `447…` (a UK mobile without its `+`) or 10 digits `NXXNXXXXXX` (North American). A `yyyymmdd…` prefix is a date stamp, not a phone.
fn unseparated_national(g: &str) -> bool {
    let b = g.as_bytes();
    let date_stamp = b.len() >= 8 && {
        let n = |r: std::ops::Range<usize>| g[r].parse::<u32>().unwrap_or(0);
        (1900..=2099).contains(&n(0..4))
            && (1..=12).contains(&n(4..6))
            && (1..=31).contains(&n(6..8))
    };
    if date_stamp {
        return false;
    }
    match b.len() {
        11 => b[0] == b'0' && matches!(b[1], b'1'..=b'3' | b'7'..=b'9'),
        // A UK mobile written internationally without the `+` (SMS Spam has `447801259231`).
        12 => g.starts_with("447"),
        10 => matches!(b[0], b'2'..=b'9') && matches!(b[3], b'2'..=b'9'),
        _ => false,
    }
}

fn phone_ok(text: &str, s: usize, e: usize) -> bool {
    let cand = &text[s..e];
    let plus = cand.starts_with('+');
    if bad_number_prefix(text, s) || bad_number_suffix(text, e) {
        return false;
    }
    // Currency before or after means an amount.
    let before = text[..s].trim_end_matches(' ');
    if before.ends_with(['$', '€', '£', '¥', '₹']) {
        return false;
    }
    let after = text[e..].trim_start_matches(' ');
    const CURRENCY: [&str; 12] = [
        "EUR", "USD", "GBP", "CHF", "€", "$", "£", "¥", "%", "kr", "euro", "dollar",
    ];
    if CURRENCY.iter().any(|c| after.starts_with(c)) {
        return false;
    }
    let shape = phone_shape(cand);
    let groups = &shape.groups;
    let seps = &shape.seps;
    if groups.is_empty() {
        return false;
    }
    let digits: usize = groups.iter().map(|g| g.len()).sum();
    let intl = plus || (groups[0].starts_with("00") && groups[0].len() >= 4 && groups.len() >= 3);
    let max = if intl || shape.paren { 15 } else { 12 };
    if !(7..=max).contains(&digits) {
        return false;
    }
    let has_dot = seps.contains(&b'.');
    if has_dot && seps.iter().any(|&c| c != b'.') {
        return false;
    }
    if is_date_like(groups, seps) {
        return false;
    }
    if has_dot && groups.len() == 4 && groups.iter().all(|g| g.len() <= 3) {
        return false;
    }
    let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if !intl && !shape.paren && sizes == [3, 2, 4] {
        return false;
    }
    if !plus
        && (before.ends_with('#')
            || preceding_words(text, s, 3)
                .iter()
                .any(|w| NUMBER_CUES.contains(&w.as_str())))
    {
        return false;
    }
    if intl || shape.paren {
        return plus || groups.len() >= 2;
    }
    if groups.len() == 1 {
        return unseparated_national(groups[0]);
    }
    // National formats need separator groups.
    if sizes[1..].iter().any(|&g| g < 2) {
        return false;
    }
    if sizes[0] == 1 && groups[0] != "1" && groups[0] != "0" {
        return false;
    }
    let lead0 = groups[0].starts_with('0');
    if groups.len() == 2 {
        return lead0 && (10..=11).contains(&digits) && sizes.iter().all(|&g| g >= 3);
    }
    if !lead0 && sizes[1..].contains(&2) {
        return false;
    }
    // 1 234 567 / 12.345.678: thousands separators.
    let same_sep = seps.iter().all(|&c| c == seps[0]);
    if same_sep
        && matches!(seps[0], b' ' | b'.')
        && sizes[0] <= 3
        && sizes[1..].iter().all(|&g| g == 3)
    {
        return false;
    }
    true
}

/// A seeded generator of multilingual sentences with planted PII and look-alikes, for tests and
/// benchmarks.
pub mod fixture {
    use super::PiiKind;
    use hone_core::rng::SeededRng;

    /// One generated sentence with its ground truth.
    #[derive(Debug, Clone)]
    pub struct FixtureCase {
        pub text: String,
        /// Planted PII as (kind, byte start, byte end).
        pub truth: Vec<(PiiKind, usize, usize)>,
        /// Planted strings that look like PII but must stay unmasked.
        pub lookalikes: Vec<String>,
    }

    /// The fixture's own draws on top of [`SeededRng`], all modulo-bounded like its `below_mod` (the
    /// fixture's cases, and the recall numbers tests assert on them, depend on these exact streams).
    trait FixtureDraws {
        /// In `lo..=hi`.
        fn range(&mut self, lo: u32, hi: u32) -> u32;
        /// `n` decimal digits.
        fn digits(&mut self, n: usize) -> String;
        /// `n` characters drawn from `set`.
        fn chars_from(&mut self, set: &[u8], n: usize) -> String;
        /// Random alphanumeric string that contains at least one letter and one digit.
        fn token(&mut self, set: &[u8], n: usize) -> String;
    }

    impl FixtureDraws for SeededRng {
        fn range(&mut self, lo: u32, hi: u32) -> u32 {
            lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
        }
        fn digits(&mut self, n: usize) -> String {
            (0..n)
                .map(|_| char::from(b'0' + self.below_mod(10) as u8))
                .collect()
        }
        fn chars_from(&mut self, set: &[u8], n: usize) -> String {
            (0..n).map(|_| char::from(*self.pick(set))).collect()
        }
        fn token(&mut self, set: &[u8], n: usize) -> String {
            loop {
                let t = self.chars_from(set, n);
                if t.bytes().any(|b| b.is_ascii_digit())
                    && t.bytes().any(|b| b.is_ascii_alphabetic())
                {
                    return t;
                }
            }
        }
    }

    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const UPNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const HEX: &[u8] = b"0123456789abcdef";

    const TEMPLATES: &[&str] = &[
        "{GREET} please update the contact e-mail to {EMAIL} — the old one bounces.",
        "{GREET} can you call me back at {PHONE}? I tried twice on {LA}.",
        "My card {CARD} was charged twice, see {LA}. {SIGN}",
        "Please refund the amount to {IBAN} (reference {LA}).",
        "For the background check: {SSN}. {SIGN}",
        "Our VPN gateway {IP} rejects the login since {LA}.",
        "The deploy log printed {SECRET} in plain text, please rotate it!",
        "Reset link: {URL} — it expires in 24 hours.",
        "{NAMEREF} from accounting said I should write to {EMAIL} about {LA}.",
        "Send the receipt to {EMAIL} and text me on {PHONE}, thx.",
        "Version {LA} crashes when I paste {SECRET} into settings.",
        "Customer wrote from {IP}: card ending {LA} declined.",
        "Is {IP} on the allow-list? Also check {LA} please.",
        "Payment details: {CARD}, IBAN {IBAN}, total {LA}.",
        "Hello, {NAMEREF} here — my phone is {PHONE} and my card {CARD} expired on {LA}.",
        "Ticket update: {LA} was escalated, the customer's address is {EMAIL}. {SIGN}",
        "Config dump:\n{SECRET}\nserver={IP}\n",
        "I clicked {URL} and it showed my account, weird! Date: {LA}",
        "{GREET} bitte schicken Sie die Rechnung an {EMAIL}. {SIGN}",
        "Meine Telefonnummer ist {PHONE}, erreichbar ab {LA}.",
        "Bitte überweisen Sie den Betrag auf {IBAN}. Größe: {LA} 😊",
        "Die Kreditkarte {CARD} wurde abgelehnt – siehe {LA}.",
        "Der Server {IP} antwortet nicht, Zugang: {SECRET}",
        "{GREET} mi tarjeta {CARD} fue rechazada el {LA}. ¡Gracias!",
        "Puede llamarme al {PHONE} o escribir a {EMAIL}. {SIGN}",
        "La dirección IP {IP} aparece en el registro junto a {LA}.",
        "Mi número de seguro social: {SSN}, por favor no lo compartan 🙏",
        "{GREET} voici mon IBAN : {IBAN}. Cordialement.",
        "Mon numéro est le {PHONE}, merci de me rappeler après {LA}.",
        "Le lien {URL} contient mon mot de passe, c'est grave ?",
        "Voilà la clé : {SECRET} — à supprimer de l'historique 🙏",
        "Ça ne marche pas depuis {LA}, {NAMEREF} a dit d'écrire à {EMAIL}. {SIGN}",
        "Nothing sensitive here, just {LA} and {LA} for the record.",
        "Ich habe {LA} bezahlt, aber {LA} ist noch offen. Grüße!",
        "Téléphone : {PHONE} ; montant {LA} ; lien {URL}",
        "Stack trace mentions {LA} near {LA}; DB was {URL} and key {SECRET}.",
        "{GREET}\nplease find attached the logs ({LA}).\n\n{SIGN}\nAcme Inc.",
        "From {IP} we saw {LA}, then {LA}; contact {PHONE}.",
    ];

    const FIRST: &[&str] = &[
        "Hans-Peter",
        "Maria",
        "John",
        "Anna",
        "Peter",
        "Zoë",
        "José",
        "Jürgen",
        "François",
        "Chloé",
        "Søren",
        "Aoife",
        "Jean-Luc",
        "Li",
        "Sarah",
        "Tom",
        "Ana María",
        "Émilie",
        "Łukasz",
    ];
    const LAST: &[&str] = &[
        "Smith",
        "García",
        "Müller",
        "Dupont",
        "Ångström",
        "O'Brien",
        "Okafor",
        "Connor",
        "Wei",
        "López",
        "Kowalski",
        "Nguyen",
        "Schröder",
        "Núñez",
        "McDonald",
    ];

    fn full_name(rng: &mut SeededRng) -> String {
        format!("{} {}", rng.pick(FIRST), rng.pick(LAST))
    }

    fn any_name(rng: &mut SeededRng) -> String {
        if rng.below_mod(2) == 0 {
            (*rng.pick(FIRST)).to_string()
        } else {
            full_name(rng)
        }
    }

    /// Luhn check digit for a digit string without its check digit.
    pub fn luhn_check_digit(partial: &str) -> u8 {
        let mut sum = 0u32;
        for (i, b) in partial.bytes().rev().enumerate() {
            let mut v = u32::from(b - b'0');
            if i % 2 == 0 {
                v *= 2;
                if v > 9 {
                    v -= 9;
                }
            }
            sum += v;
        }
        ((10 - sum % 10) % 10) as u8
    }

    /// The two ISO 7064 mod-97 check digits for country `cc` and `bban`.
    pub fn iban_check_digits(cc: &str, bban: &str) -> String {
        let mut r = 0u32;
        for b in bban.bytes().chain(cc.bytes()).chain(*b"00") {
            r = if b.is_ascii_digit() {
                (r * 10 + u32::from(b - b'0')) % 97
            } else {
                (r * 100 + u32::from(b - b'A' + 10)) % 97
            };
        }
        format!("{:02}", 98 - r)
    }

    fn group4(s: &str) -> String {
        let b = s.as_bytes();
        b.chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn card_number(rng: &mut SeededRng) -> (String, bool) {
        let (prefix, len, amex) = match rng.below_mod(3) {
            0 => ("4".to_string(), 16, false),
            1 => (format!("5{}", rng.range(1, 5)), 16, false),
            _ => (
                format!("3{}", if rng.below_mod(2) == 0 { 4 } else { 7 }),
                15,
                true,
            ),
        };
        let body = format!("{prefix}{}", rng.digits(len - 1 - prefix.len()));
        let full = format!("{body}{}", luhn_check_digit(&body));
        (full, amex)
    }

    fn format_card(rng: &mut SeededRng, n: &str, amex: bool) -> String {
        if amex {
            return match rng.below_mod(2) {
                0 => format!("{} {} {}", &n[..4], &n[4..10], &n[10..]),
                _ => n.to_string(),
            };
        }
        match rng.below_mod(3) {
            0 => group4(n),
            1 => group4(n).replace(' ', "-"),
            _ => n.to_string(),
        }
    }

    const IBAN_COUNTRIES: &[(&str, usize, usize)] = &[
        // (country, total length, leading letters in the BBAN)
        ("DE", 22, 0),
        ("GB", 22, 4),
        ("FR", 27, 0),
        ("ES", 24, 0),
        ("IT", 27, 1),
        ("NL", 18, 4),
        ("BE", 16, 0),
        ("CH", 21, 0),
        ("AT", 20, 0),
        ("PL", 28, 0),
        ("SE", 24, 0),
        ("IE", 22, 4),
        ("PT", 25, 0),
    ];

    fn iban(rng: &mut SeededRng) -> (String, String, String) {
        let &(cc, len, letters) = rng.pick(IBAN_COUNTRIES);
        let bban = format!(
            "{}{}",
            rng.chars_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", letters),
            rng.digits(len - 4 - letters)
        );
        let check = iban_check_digits(cc, &bban);
        (cc.to_string(), check, bban)
    }

    fn format_iban(rng: &mut SeededRng, compact: &str) -> String {
        if rng.below_mod(3) == 0 {
            compact.to_string()
        } else {
            group4(compact)
        }
    }

    fn phone(rng: &mut SeededRng) -> String {
        match rng.below_mod(13) {
            9 => format!(
                "0{} {} {} {} {}",
                rng.range(1, 9),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2)
            ),
            10 => format!(
                "+34 6{} {} {} {}",
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2)
            ),
            11 => format!("(020) {} {}", rng.digits(4), rng.digits(4)),
            12 => format!("+44 7700 {}", rng.digits(6)),
            0 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
            1 => format!(
                "+1 ({}{}) {}-{}",
                rng.range(2, 9),
                rng.digits(2),
                rng.digits(3),
                rng.digits(4)
            ),
            2 => format!(
                "({}{}) {}-{}",
                rng.range(2, 9),
                rng.digits(2),
                rng.digits(3),
                rng.digits(4)
            ),
            3 => format!(
                "{}{}-{}-{}",
                rng.range(2, 9),
                rng.digits(2),
                rng.digits(3),
                rng.digits(4)
            ),
            4 => format!("+49 30 {}", rng.digits(7)),
            5 => format!(
                "+33 6 {} {} {} {}",
                rng.digits(2),
                rng.digits(2),
                rng.digits(2),
                rng.digits(2)
            ),
            6 => format!("0044 20 {} {}", rng.digits(4), rng.digits(4)),
            7 => format!("07700 {}", rng.digits(6)),
            _ => format!("+91 9{} {}", rng.digits(4), rng.digits(5)),
        }
    }

    fn ssn_parts(rng: &mut SeededRng) -> (String, String, String) {
        let mut area = rng.range(1, 899);
        if area == 666 {
            area = 665;
        }
        (
            format!("{area:03}"),
            format!("{:02}", rng.range(1, 99)),
            format!("{:04}", rng.range(1, 9999)),
        )
    }

    fn hex(rng: &mut SeededRng, n: usize) -> String {
        rng.chars_from(HEX, n)
    }

    fn ip(rng: &mut SeededRng) -> String {
        match rng.below_mod(5) {
            0 | 1 => format!(
                "{}.{}.{}.{}",
                rng.range(1, 223),
                rng.range(0, 255),
                rng.range(0, 255),
                rng.range(1, 254)
            ),
            2 => (0..8).map(|_| hex(rng, 4)).collect::<Vec<_>>().join(":"),
            3 => format!("2001:db8:{}::{:x}", hex(rng, 4), rng.range(1, 0xfff)),
            _ => format!(
                "fe80::{:x}:{}:{}:{:x}",
                rng.range(1, 0xffff),
                hex(rng, 4),
                hex(rng, 3),
                rng.range(1, 0xfff)
            ),
        }
    }

    /// (prefix, secret value, suffix).
    fn secret(rng: &mut SeededRng) -> (String, String, String) {
        let plain = |v: String| (String::new(), v, String::new());
        match rng.below_mod(14) {
            0 => plain(format!("AKIA{}", rng.token(UPNUM, 16))),
            1 => plain(format!("ghp_{}", rng.token(ALNUM, 36))),
            2 => plain(format!("sk_live_{}", rng.token(ALNUM, 24))),
            3 => plain(format!("sk-proj-{}", rng.token(ALNUM, 40))),
            4 => plain(format!(
                "xoxb-{}-{}-{}",
                rng.digits(12),
                rng.digits(12),
                rng.token(ALNUM, 24)
            )),
            5 => plain(format!("AIza{}", rng.token(B64URL, 35))),
            6 => plain(format!(
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
                rng.token(B64URL, 30),
                rng.token(B64URL, 43)
            )),
            7 => (
                "Authorization: Bearer ".to_string(),
                rng.token(ALNUM, 40),
                String::new(),
            ),
            8 => ("password=".to_string(), rng.token(ALNUM, 14), String::new()),
            9 => ("api_key: ".to_string(), rng.token(ALNUM, 20), String::new()),
            10 => ("token=".to_string(), rng.token(ALNUM, 18), String::new()),
            11 => {
                let lines: Vec<String> = (0..3).map(|_| rng.token(B64, 64)).collect();
                plain(format!(
                    "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
                    lines.join("\n")
                ))
            }
            12 => (
                "AWS_SECRET_ACCESS_KEY=".to_string(),
                rng.token(B64, 40),
                String::new(),
            ),
            _ => plain(rng.token(B64URL, 40)),
        }
    }

    fn url(rng: &mut SeededRng) -> String {
        let host = *rng.pick(&["example.com", "shop.example.org", "intranet.acme.de"]);
        let tok = rng.token(ALNUM, 24);
        match rng.below_mod(6) {
            5 => format!(
                "postgres://svc:{}@db.{host}:5432/prod",
                rng.token(ALNUM, 12)
            ),
            0 => format!(
                "https://{}:{}@{host}/admin/panel",
                rng.pick(&["admin", "jsmith", "deploy"]),
                rng.token(ALNUM, 10)
            ),
            1 => format!("https://{host}/oauth/callback?access_token={tok}&state=xyz"),
            2 => format!("https://api.{host}/v1/items?api_key={tok}"),
            3 => format!("https://{host}/download?file=report.pdf&sig={tok}&expires=1700000000"),
            _ => format!("https://{host}/reset?token={tok}"),
        }
    }

    fn email(rng: &mut SeededRng) -> String {
        let local = *rng.pick(&[
            "jürgen.müller",
            "maria.garcia",
            "john.smith+billing",
            "zoë",
            "peter_k",
            "a.nguyen",
            "françois.dupont",
            "li.wei",
            "support-team",
        ]);
        let domain = *rng.pick(&[
            "beispiel.de",
            "example.com",
            "mail.example.co.uk",
            "correo.es",
            "société.fr",
            "support.acme.io",
        ]);
        if rng.below_mod(3) == 0 {
            format!("{local}{}@{domain}", rng.range(1, 99))
        } else {
            format!("{local}@{domain}")
        }
    }

    /// (prefix, value, suffix) for a planted PII slot.
    fn slot(rng: &mut SeededRng, slot: &str) -> (PiiKind, String, String, String) {
        let p = |k, v| (k, String::new(), v, String::new());
        match slot {
            "EMAIL" => p(PiiKind::Email, email(rng)),
            "PHONE" => p(PiiKind::Phone, phone(rng)),
            "CARD" => {
                let (n, amex) = card_number(rng);
                p(PiiKind::Card, format_card(rng, &n, amex))
            }
            "IBAN" => {
                let (cc, ck, bban) = iban(rng);
                p(PiiKind::Iban, format_iban(rng, &format!("{cc}{ck}{bban}")))
            }
            "SSN" => {
                let (a, g, s) = ssn_parts(rng);
                match rng.below_mod(4) {
                    0 | 1 => p(PiiKind::Ssn, format!("{a}-{g}-{s}")),
                    2 => (
                        PiiKind::Ssn,
                        "SSN: ".into(),
                        format!("{a}{g}{s}"),
                        String::new(),
                    ),
                    _ => (
                        PiiKind::Ssn,
                        "social security number ".into(),
                        format!("{a} {g} {s}"),
                        String::new(),
                    ),
                }
            }
            "IP" => p(PiiKind::Ip, ip(rng)),
            "SECRET" => {
                let (a, v, b) = secret(rng);
                (PiiKind::Secret, a, v, b)
            }
            "URL" => p(PiiKind::Url, url(rng)),
            "GREET" => {
                let (pre, name) = match rng.below_mod(12) {
                    0 => ("Hi ", any_name(rng)),
                    1 => ("Hello ", full_name(rng)),
                    2 => ("Hey ", any_name(rng)),
                    3 => ("Dear Ms. ", (*rng.pick(LAST)).to_string()),
                    4 => ("Dear ", any_name(rng)),
                    5 => ("Hallo ", any_name(rng)),
                    6 => ("Sehr geehrte Frau ", (*rng.pick(LAST)).to_string()),
                    7 => ("Hola ", any_name(rng)),
                    8 => ("Estimado Sr. ", (*rng.pick(LAST)).to_string()),
                    9 => ("Bonjour ", any_name(rng)),
                    10 => ("Bonjour M. ", (*rng.pick(LAST)).to_string()),
                    _ => ("Liebe ", any_name(rng)),
                };
                (PiiKind::Person, pre.into(), name, ",".into())
            }
            "SIGN" => {
                let pre = *rng.pick(&[
                    "Thanks, ",
                    "Regards,\n",
                    "Best, ",
                    "Cheers - ",
                    "Kind regards,\n",
                    "Viele Grüße,\n",
                    "Mit freundlichen Grüßen\n",
                    "Saludos, ",
                    "Un saludo,\n",
                    "Cordialement,\n",
                    "Merci, ",
                    "Best regards,\n\n",
                    "Thanks!\n",
                ]);
                (PiiKind::Person, pre.into(), any_name(rng), String::new())
            }
            _ => {
                let (pre, name) = match rng.below_mod(8) {
                    0 => ("Mr. ", (*rng.pick(LAST)).to_string()),
                    1 => ("Mrs ", (*rng.pick(LAST)).to_string()),
                    2 => ("Dr. ", (*rng.pick(LAST)).to_string()),
                    3 => ("my name is ", any_name(rng)),
                    4 => ("I'm ", full_name(rng)),
                    5 => ("ich heiße ", any_name(rng)),
                    6 => ("me llamo ", any_name(rng)),
                    _ => ("je m'appelle ", any_name(rng)),
                };
                (PiiKind::Person, pre.into(), name, String::new())
            }
        }
    }

    fn lookalike(rng: &mut SeededRng) -> String {
        let (y, m, d) = (rng.range(2019, 2026), rng.range(1, 12), rng.range(1, 28));
        match rng.below_mod(30) {
            0 => format!("{y}-{m:02}-{d:02}"),
            1 => format!("{d:02}/{m:02}/{y}"),
            2 => format!("{d:02}.{m:02}.{y}"),
            3 => format!(
                "{:02}:{:02}:{:02}",
                rng.range(0, 23),
                rng.range(0, 59),
                rng.range(0, 59)
            ),
            4 => format!("{:02}:{:02}", rng.range(0, 23), rng.range(0, 59)),
            5 => format!("${},{}.{}", rng.range(1, 9), rng.digits(3), rng.digits(2)),
            6 => format!("€ {},{}", rng.range(1, 999), rng.digits(2)),
            7 => format!(
                "{} {},{} EUR",
                rng.range(1, 9),
                rng.digits(3),
                rng.digits(2)
            ),
            8 => format!("order #{}{}", rng.range(1, 9), rng.digits(8)),
            9 => format!(
                "Order {}{}-{}-{}",
                rng.range(1, 9),
                rng.digits(3),
                rng.digits(4),
                rng.digits(2)
            ),
            10 => format!("ticket {}{}", rng.range(1, 9), rng.digits(7)),
            11 => format!("invoice no. {y}{m:02}{d:02}{}", rng.digits(3)),
            12 => format!(
                "v{}.{}.{}",
                rng.range(1, 20),
                rng.range(0, 30),
                rng.range(0, 99)
            ),
            13 => format!(
                "v{}.{}.{}.{}",
                rng.range(1, 9),
                rng.range(0, 9),
                rng.range(0, 9),
                rng.range(0, 9)
            ),
            14 => format!(
                "version {}.{}.{}.{}",
                rng.range(1, 20),
                rng.range(0, 9),
                rng.range(0, 9),
                rng.range(0, 99)
            ),
            15 => {
                // A 16-digit number failing Luhn.
                let (n, amex) = card_number(rng);
                let last = n.as_bytes()[n.len() - 1] - b'0';
                let bad = format!("{}{}", &n[..n.len() - 1], (last + 1) % 10);
                format_card(rng, &bad, amex)
            }
            16 => {
                let (cc, ck, bban) = iban(rng);
                let v: u32 = ck.parse().unwrap_or(50);
                let bad = (v - 2 + 1 + rng.range(0, 90)) % 97 + 2;
                let bad = if bad == v { (v - 2 + 1) % 97 + 2 } else { bad };
                format_iban(rng, &format!("{cc}{bad:02}{bban}"))
            }
            17 => {
                let (a, g, s) = ssn_parts(rng);
                match rng.below_mod(5) {
                    0 => format!("000-{g}-{s}"),
                    1 => format!("666-{g}-{s}"),
                    2 => format!("9{}-{g}-{s}", rng.digits(2)),
                    3 => format!("{a}-00-{s}"),
                    _ => format!("{a}-{g}-0000"),
                }
            }
            18 => format!(
                "https://www.example.com/help/article-{}?lang=de",
                rng.range(1, 999)
            ),
            19 => format!("commit {}", hex(rng, 40)),
            20 => format!(
                "request id {}-{}-{}-{}-{}",
                hex(rng, 8),
                hex(rng, 4),
                hex(rng, 4),
                hex(rng, 4),
                hex(rng, 12)
            ),
            21 => (*rng.pick(&[
                "I'm Sad",
                "I'm Stuck",
                "Hi there",
                "Dear Customer",
                "Hello Support Team",
            ]))
            .to_string(),
            22 => format!(
                "{} {} {},{} EUR",
                rng.range(1, 9),
                rng.digits(3),
                rng.digits(3),
                rng.digits(2)
            ),
            23 => format!("ticket 55{}", rng.digits(6)),
            24 => (*rng.pick(&[
                "src/components/UserProfileSettings2Panel.tsx",
                "veryLongVariableNameForTesting123WithNumbers",
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
                "test_user_account_2024_backup_final_v3_copy",
            ]))
            .to_string(),
            25 => format!(
                "ISBN 978-3-{}-{}-{}",
                rng.digits(2),
                rng.digits(6),
                rng.range(0, 9)
            ),
            26 => format!(
                "coordinates {}.{}, {}.{}",
                rng.range(10, 60),
                rng.digits(4),
                rng.range(1, 20),
                rng.digits(4)
            ),
            27 => format!("zip {}-{}", rng.digits(5), rng.digits(4)),
            28 => format!("{} {} users", rng.range(100, 999), rng.digits(3)),
            _ => format!(
                "Score {}-{}-{}",
                rng.range(0, 9),
                rng.range(0, 9),
                rng.range(0, 9)
            ),
        }
    }

    /// Builds `n` cases deterministically from `seed`.
    pub fn generate(seed: u64, n: usize) -> Vec<FixtureCase> {
        let mut rng = SeededRng::new(seed);
        (0..n)
            .map(|i| {
                let template = TEMPLATES[(i + rng.below_mod(TEMPLATES.len())) % TEMPLATES.len()];
                build(&mut rng, template)
            })
            .collect()
    }

    fn build(rng: &mut SeededRng, template: &str) -> FixtureCase {
        let mut case = FixtureCase {
            text: String::new(),
            truth: Vec::new(),
            lookalikes: Vec::new(),
        };
        let mut rest = template;
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}').map(|j| i + j) else {
                break;
            };
            case.text.push_str(&rest[..i]);
            let name = &rest[i + 1..j];
            if name == "LA" {
                let v = lookalike(rng);
                case.text.push_str(&v);
                case.lookalikes.push(v);
            } else {
                let (kind, pre, val, post) = slot(rng, name);
                case.text.push_str(&pre);
                let s = case.text.len();
                case.text.push_str(&val);
                case.truth.push((kind, s, case.text.len()));
                case.text.push_str(&post);
            }
            rest = &rest[j + 1..];
        }
        case.text.push_str(rest);
        case
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det() -> &'static PiiDetector {
        &DETECTOR
    }

    fn spans(text: &str) -> Vec<(PiiKind, &str)> {
        det()
            .detect(text)
            .into_iter()
            .map(|s| (s.kind, &text[s.start..s.end]))
            .collect()
    }

    fn has(text: &str, kind: PiiKind, value: &str) {
        let got = spans(text);
        assert!(
            got.contains(&(kind, value)),
            "expected {kind:?} {value:?} in {text:?}, got {got:?}"
        );
    }

    fn none_of(text: &str, kind: PiiKind) {
        let got = spans(text);
        assert!(
            !got.iter().any(|(k, _)| *k == kind),
            "expected no {kind:?} in {text:?}, got {got:?}"
        );
    }

    #[test]
    fn kinds_api() {
        assert_eq!(PiiKind::ALL.len(), 12);
        assert_eq!(PiiKind::Email.placeholder(), "<EMAIL>");
        assert_eq!(PiiKind::Person.name(), "person");
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PiiDetector>();
        let m = det().mask("nothing here");
        assert!(!m.changed());
        assert_eq!(m.text, "nothing here");
        let m = det().mask("mail a@b.de and c@d.org");
        assert_eq!(m.count(PiiKind::Email), 2);
        assert_eq!(m.text, "mail <EMAIL> and <EMAIL>");
        assert_eq!(mask_text("x a@b.de"), "x <EMAIL>");
    }

    #[test]
    fn email() {
        has(
            "write to john.smith+billing@mail.example.co.uk.",
            PiiKind::Email,
            "john.smith+billing@mail.example.co.uk",
        );
        has(
            "an jürgen.müller@beispiel.de schreiben",
            PiiKind::Email,
            "jürgen.müller@beispiel.de",
        );
        has("<zoë@société.fr>", PiiKind::Email, "zoë@société.fr");
        none_of("@handle and user@localhost and a @ b", PiiKind::Email);
    }

    #[test]
    fn phone() {
        for p in [
            "+44 20 7946 0958",
            "+1 (415) 555-0132",
            "(415) 555-0132",
            "415-555-0132",
            "+49 30 1234567",
            "+33 6 12 34 56 78",
            "0044 20 7946 0958",
            "07700 900123",
            "+91 98765 43210",
            "415.555.0132",
            "07700900123",
            "4155550199",
            "09066368327",
        ] {
            has(&format!("Call me at {p}, thanks."), PiiKind::Phone, p);
        }
        // Digit runs that are not phones: ids with a cue, date stamps, timestamps, amounts, short runs.
        for n in [
            "order 4155550199 shipped",
            "ticket #07700900123",
            "batch 2024031512 done",
            "epoch 1700000000 seconds",
            "paid 4155550199 USD",
            "code 123456789",
            "id 01234567890123",
        ] {
            none_of(n, PiiKind::Phone);
        }
        for n in [
            "on 2024-03-15 at 10:15:00",
            "by 15/03/2024 or 15.03.2024 or 03-15-2024",
            "it costs $1,299.99 or € 45,00 or 1 234,56 EUR or 1 234 567,89 EUR",
            "order #123456789",
            "Order 4512-8890-11",
            "ticket 55512345",
            "invoice no. 20240315001",
            "version 10.0.19045.2006 and v2.14.3",
            "we sold 1234567 units, 12.345.678 total",
            "reference 415-555-0132",
            "SSN-like 000-12-3456",
        ] {
            none_of(n, PiiKind::Phone);
        }
        has(
            "order ref: +44 20 7946 0958",
            PiiKind::Phone,
            "+44 20 7946 0958",
        );
    }

    #[test]
    fn card() {
        has(
            "Karte 4111 1111 1111 1111 bitte",
            PiiKind::Card,
            "4111 1111 1111 1111",
        );
        has(
            "card 4111-1111-1111-1111.",
            PiiKind::Card,
            "4111-1111-1111-1111",
        );
        has("amex 3782 822463 10005", PiiKind::Card, "3782 822463 10005");
        has("raw 5555555555554444", PiiKind::Card, "5555555555554444");
        has(
            "then 4111 1111 1111 1111 2025",
            PiiKind::Card,
            "4111 1111 1111 1111",
        );
        none_of("card 4111 1111 1111 1112", PiiKind::Card);
        none_of("id 41111111111111112", PiiKind::Card);
        none_of("x4111111111111111", PiiKind::Card);
    }

    #[test]
    fn iban() {
        has(
            "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX",
            PiiKind::Iban,
            "DE89 3704 0044 0532 0130 00",
        );
        has(
            "to DE89370400440532013000.",
            PiiKind::Iban,
            "DE89370400440532013000",
        );
        has(
            "GB29 NWBK 6016 1331 9268 19",
            PiiKind::Iban,
            "GB29 NWBK 6016 1331 9268 19",
        );
        has(
            "FR14 2004 1010 0505 0001 3M02 606",
            PiiKind::Iban,
            "FR14 2004 1010 0505 0001 3M02 606",
        );
        has("BE68539007547034", PiiKind::Iban, "BE68539007547034");
        let bad = "IBAN DE88 3704 0044 0532 0130 00";
        none_of(bad, PiiKind::Iban);
        assert!(spans(bad).is_empty(), "{:?}", spans(bad));
        none_of("GB28 NWBK 6016 1331 9268 19", PiiKind::Card);
    }

    #[test]
    fn ssn() {
        has("SSN 123-45-6789.", PiiKind::Ssn, "123-45-6789");
        has("my SSN: 123456789", PiiKind::Ssn, "123456789");
        has(
            "social security number 123 45 6789",
            PiiKind::Ssn,
            "123 45 6789",
        );
        for n in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(spans(&format!("id {n} x")).is_empty(), "{n}");
        }
        none_of("call 123456789 now", PiiKind::Ssn);
        none_of("call 123 45 6789 now", PiiKind::Ssn);
    }

    #[test]
    fn ip() {
        has("from 192.168.1.20:8080", PiiKind::Ip, "192.168.1.20");
        has(
            "host 2001:0db8:85a3:0000:0000:8a2e:0370:7334 down",
            PiiKind::Ip,
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        );
        has(
            "ping fe80::1ff:fe23:4567:890a now",
            PiiKind::Ip,
            "fe80::1ff:fe23:4567:890a",
        );
        has("lo ::1", PiiKind::Ip, "::1");
        has("v6 2001:db8::", PiiKind::Ip, "2001:db8::");
        for n in [
            "at 256.1.1.1",
            "running v1.2.3.4",
            "version 10.0.0.1",
            "at 12:30 or 10:15:00",
            "MAC 00:1A:2B:3C:4D:5E",
            "use std::fmt::Display and a::b",
            "1.2.3.4.5",
        ] {
            none_of(n, PiiKind::Ip);
        }
    }

    #[test]
    fn secret() {
        for s in [
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "pk_live_51H8abcdefGHIJ1234",
            "AKIAIOSFODNN7EXAMPLE",
            "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",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "f3B9xK2mQ7pL4vN8zR1tY6wE5uI0oA3sD7gH2jK9",
        ] {
            has(&format!("key: {s} ok"), PiiKind::Secret, s);
        }
        has(
            "Authorization: Bearer abcDEF1234567890ghiJKL",
            PiiKind::Secret,
            "abcDEF1234567890ghiJKL",
        );
        has("password=hunter2", PiiKind::Secret, "hunter2");
        has("\"api_key\": \"a1b2c3d4e5\"", PiiKind::Secret, "a1b2c3d4e5");
        has("db_password=s3cr3t$", PiiKind::Secret, "s3cr3t$");
        let pk = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd==\n-----END RSA PRIVATE KEY-----";
        has(&format!("here:\n{pk}\nbye"), PiiKind::Secret, pk);
        for n in [
            "password: please reset it",
            "commit 3f5a9c0b7e1d2f4a6b8c0d1e2f3a4b5c6d7e8f90 fixed it",
            "request 550e8400-e29b-41d4-a716-446655440000",
            "see how-to-reset-your-account-password-2024-guide-part-1",
            "compass: north",
            // An address in SMS spam (issue 12, finding 5).
            "Txt CHAT to 86688 150p/MsgrcvdHG/Suite342/2Lands/Row/W1J6HL LDN 18 yrs",
            "claimcode M39M51 £1.50pmmorefrommobile2Bremoved-MobyPOBox734LS27YF",
        ] {
            none_of(n, PiiKind::Secret);
        }
        // A random token with slashes is still a secret.
        has(
            "token ghp_Xk9aQ2/Lm8Zr4Tq1/Vb7Nc3Wd6Ye0Fj5Hs2Pu",
            PiiKind::Secret,
            "ghp_Xk9aQ2/Lm8Zr4Tq1/Vb7Nc3Wd6Ye0Fj5Hs2Pu",
        );
        has(
            "key 3f5a9c0b7e1d2f4a6b8c0d1e2f3a4b5c6d7e8f90",
            PiiKind::Secret,
            "3f5a9c0b7e1d2f4a6b8c0d1e2f3a4b5c6d7e8f90",
        );
    }

    #[test]
    fn url() {
        has(
            "go https://admin:pa55@example.com/x?y=1.",
            PiiKind::Url,
            "https://admin:pa55@example.com/x?y=1",
        );
        has(
            "see https://ex.com/cb?state=1&access_token=abc123",
            PiiKind::Url,
            "https://ex.com/cb?state=1&access_token=abc123",
        );
        has(
            "https://maps.ex.com/api?key=AIzaXYZ&q=1",
            PiiKind::Url,
            "https://maps.ex.com/api?key=AIzaXYZ&q=1",
        );
        none_of(
            "see https://www.example.com/help/article-42?lang=de.",
            PiiKind::Url,
        );
        none_of("see https://user@example.com/path", PiiKind::Url);
        assert!(
            spans(
                "plain https://github.com/org/repo/commit/3f5a9c0b7e1d2f4a6b8c0d1e2f3a4b5c6d7e8f90"
            )
            .is_empty()
        );
    }

    #[test]
    fn person() {
        has("Hi Maria, your order shipped.", PiiKind::Person, "Maria");
        has("Hello John Smith,", PiiKind::Person, "John Smith");
        has("Dear Ms. García,", PiiKind::Person, "García");
        has("Hey Anna, quick one", PiiKind::Person, "Anna");
        has("Thanks, Peter", PiiKind::Person, "Peter");
        has("Regards,\nJohn Smith", PiiKind::Person, "John Smith");
        has("Best, Zoë Ångström", PiiKind::Person, "Zoë Ångström");
        has("Cheers - Tom", PiiKind::Person, "Tom");
        has("I met Mr. Smith and Mrs Jones", PiiKind::Person, "Smith");
        has("I met Mr. Smith and Mrs Jones", PiiKind::Person, "Jones");
        has("ask Ms. Müller or Dr. Okafor", PiiKind::Person, "Müller");
        has("ask Ms. Müller or Dr. Okafor", PiiKind::Person, "Okafor");
        has("my name is Li Wei and", PiiKind::Person, "Li Wei");
        has("I'm Sarah Connor from IT", PiiKind::Person, "Sarah Connor");
        has("Thanks, Dr. Okafor", PiiKind::Person, "Okafor");
        has("Liebe Grüße, Anna", PiiKind::Person, "Anna");
        has(
            "Hi Aoife O'Brien and Jean-Luc",
            PiiKind::Person,
            "Aoife O'Brien",
        );
        has("Thanks, Peter Support", PiiKind::Person, "Peter");
        none_of("Thanks, The Support Team", PiiKind::Person);
        for n in [
            "I'm Sad",
            "I'm Stuck today",
            "Hi there!",
            "Dear Customer,",
            "Hello Support Team",
            "Hi All",
            "Thanks for the help",
            "Best Buy sells it",
            "This is Not Working",
            "Dear Sir or Madam",
            "Hi I am here",
            "thanks, everyone",
            // False positives seen on SMS Spam (issue 12, finding 5).
            "If so, thanks. Got a pleasant surprise",
            "Thanks. Fills me with complete calm",
            "Cheers. Oh yeah and how are you",
            "Dear Voucher Holder, to claim",
            "Dear Subscriber ur draw",
            "Hey Boys. Want hot pics",
            "Hi Dear Call me its urgnt",
        ] {
            none_of(n, PiiKind::Person);
        }
        has("Thanks. John", PiiKind::Person, "John");
        has("Cheers.\nJohn Smith", PiiKind::Person, "John Smith");
        let m = det().mask("Dear Ms. García, thanks");
        assert_eq!(m.text, "Dear Ms. <PERSON>, thanks");
    }

    #[test]
    fn regressions() {
        for n in [
            "src/components/UserProfileSettings2Panel.tsx",
            "const veryLongVariableNameForTesting123WithNumbers = 5;",
            "ISBN 978-3-16-148410-0, coordinates 48.8566, 2.3522, zip 94105-1234",
            "Score was 3-2-1 and 2+2=4, 100 000 users, room 1204-1206, 24/7",
            "Time 12:30:45.123 and ratio 16:9, OTP 123456",
            "UUID 123e4567-e89b-12d3-a456-426614174000",
        ] {
            assert!(spans(n).is_empty(), "{n}: {:?}", spans(n));
        }
        has(
            "téléphone : 01 23 45 67 89",
            PiiKind::Phone,
            "01 23 45 67 89",
        );
        has(
            "postgres://admin:s3cret@db.internal:5432/prod",
            PiiKind::Url,
            "postgres://admin:s3cret@db.internal:5432/prod",
        );
        has("Best regards,\n\nSarah", PiiKind::Person, "Sarah");
        has("Hallo Frau Müller, ja", PiiKind::Person, "Müller");
        has(
            "Grüßen\nDr. Hans-Peter Schmidt",
            PiiKind::Person,
            "Hans-Peter Schmidt",
        );
        has("[2001:db8::1]:443", PiiKind::Ip, "2001:db8::1");
        has("or ::ffff:192.0.2.128", PiiKind::Ip, "::ffff:192.0.2.128");
    }

    #[test]
    fn non_ascii_offsets() {
        let text = "Größe: bitte an jürgen.müller@beispiel.de schreiben, Karte 4111 1111 1111 1111 — danke! 😊";
        // Offsets of the validators' spans only: the name tagger reads the unknown capitalised
        // "Karte" before a number as a name (a known false positive of its unknown-word bias, see
        // hone_ner::model::UNKNOWN_NAME_BIAS).
        use hone_core::config::PiiType;
        let det = det().for_types(&[PiiType::Email, PiiType::Card]);
        let det = || &det;
        let got = det().detect(text);
        assert_eq!(got.len(), 2, "{got:?}");
        let chars: Vec<char> = text.chars().collect();
        let expect = [
            (PiiKind::Email, "jürgen.müller@beispiel.de"),
            (PiiKind::Card, "4111 1111 1111 1111"),
        ];
        for (s, (k, v)) in got.iter().zip(expect) {
            assert_eq!(s.kind, k);
            assert_eq!(&text[s.start..s.end], v);
            let via_chars: String = chars[s.char_start..s.char_end].iter().collect();
            assert_eq!(via_chars, v);
        }
        assert_eq!(got[0].char_start, 16);
        let m = det().mask(text);
        assert_eq!(
            m.text,
            "Größe: bitte an <EMAIL> schreiben, Karte <CARD> — danke! 😊"
        );
    }

    #[test]
    fn never_panics() {
        let mut x: u64 = 0x1234_5678;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet: Vec<&str> = vec![
            "a",
            "Z",
            "0",
            "9",
            "@",
            ".",
            ":",
            "-",
            "+",
            "(",
            ")",
            " ",
            "\n",
            "ü",
            "😊",
            "=",
            "/",
            "::",
            "Hi ",
            "Thanks, ",
            "Mr. ",
            "DE89",
            "4111",
            "-----BEGIN RSA PRIVATE KEY-----",
            "https://",
            "eyJ",
            "sk-",
            "\u{FFFD}",
            "ß",
            "É",
            "'",
        ];
        for _ in 0..3000 {
            let len = (rnd() % 60) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(rnd() % alphabet.len() as u64) as usize])
                .collect();
            let m = det().mask(&s);
            for sp in &m.spans {
                assert!(s.is_char_boundary(sp.start) && s.is_char_boundary(sp.end));
                assert!(sp.start < sp.end);
            }
            for w in m.spans.windows(2) {
                assert!(w[0].end <= w[1].start);
            }
        }
        let bytes: Vec<u8> = (0..20_000).map(|_| (rnd() & 0xff) as u8).collect();
        let lossy = String::from_utf8_lossy(&bytes);
        let _ = det().mask(&lossy);
        assert!(det().detect("").is_empty());
        let huge = "Hi Maria, call +44 20 7946 0958 or mail a@b.de. ".repeat(20_000);
        let m = det().mask(&huge);
        assert_eq!(m.count(PiiKind::Phone), 20_000);
        let digits = "1".repeat(100_000);
        let _ = det().mask(&digits);
        let unterminated = format!("-----BEGIN PRIVATE KEY-----\n{}", "QUJD\n".repeat(1000));
        assert_eq!(det().detect(&unterminated).len(), 1);
    }

    #[test]
    fn fixture_precision_recall() {
        let cases = fixture::generate(0xC0FFEE, 400);
        assert!(cases.len() >= 300);
        let mut tp = [0usize; 12];
        let mut pred = [0usize; 12];
        let mut truth_n = [0usize; 12];
        let idx = |k: PiiKind| PiiKind::ALL.iter().position(|&x| x == k).unwrap_or(0);
        let mut failures = Vec::new();
        for c in &cases {
            let got = det().detect(&c.text);
            let got_set: Vec<(PiiKind, usize, usize)> =
                got.iter().map(|s| (s.kind, s.start, s.end)).collect();
            for t in &c.truth {
                truth_n[idx(t.0)] += 1;
                if got_set.contains(t) {
                    tp[idx(t.0)] += 1;
                } else {
                    failures.push(format!(
                        "MISS {:?} {:?} in {:?}",
                        t.0,
                        &c.text[t.1..t.2],
                        c.text
                    ));
                }
            }
            for g in &got_set {
                pred[idx(g.0)] += 1;
                if !c.truth.contains(g) {
                    failures.push(format!(
                        "FP {:?} {:?} in {:?}",
                        g.0,
                        &c.text[g.1..g.2],
                        c.text
                    ));
                }
            }
            let masked = det().mask(&c.text).text;
            // Values under 4 chars (e.g. the name "Li") can occur inside ordinary words.
            for t in &c.truth {
                let v = &c.text[t.1..t.2];
                if v.chars().count() >= 4 {
                    assert!(!masked.contains(v), "planted {v:?} survived in {masked:?}");
                }
            }
            for la in &c.lookalikes {
                assert!(
                    masked.contains(la.as_str()),
                    "look-alike {la:?} was masked: {masked:?}"
                );
            }
        }
        for f in failures.iter().take(40) {
            eprintln!("{f}");
        }
        eprintln!("exact-span match, {} sentences", cases.len());
        eprintln!(
            "{:<8} {:>6} {:>6} {:>6} {:>7} {:>7}",
            "kind", "truth", "pred", "tp", "P", "R"
        );
        // The fixture plants no addresses, places or organisations (the tagger's own tests and
        // `bench/run pii` measure those).
        for k in PiiKind::ALL
            .into_iter()
            .filter(|k| !matches!(k, PiiKind::Address | PiiKind::Location | PiiKind::Org))
        {
            let i = idx(k);
            let p = if pred[i] == 0 {
                1.0
            } else {
                tp[i] as f64 / pred[i] as f64
            };
            let r = if truth_n[i] == 0 {
                1.0
            } else {
                tp[i] as f64 / truth_n[i] as f64
            };
            eprintln!(
                "{:<8} {:>6} {:>6} {:>6} {:>7.3} {:>7.3}",
                k.name(),
                truth_n[i],
                pred[i],
                tp[i],
                p,
                r
            );
            assert!(truth_n[i] >= 10, "too few planted {k:?}");
            // Names are also found without cues now (the learned tagger), which costs exact-span
            // precision on this fixture's German and French sentences ("Der Server"): 0.949 measured.
            let p_min = if k == PiiKind::Person { 0.90 } else { 0.95 };
            assert!(p >= p_min && r >= 0.95, "{k:?}: P={p:.3} R={r:.3}");
        }
    }

    #[test]
    fn each_kind_has_its_own_bit_in_all_order() {
        for (i, k) in PiiKind::ALL.iter().enumerate() {
            assert_eq!(k.bit(), 1 << i, "{k:?}");
        }
    }

    #[test]
    fn a_question_word_after_a_greeting_is_not_a_name() {
        for t in [
            "Good morning, How do I cancel my card?",
            "Hi, Can I top up using an international card",
            "Hello, Why was my transfer declined?",
        ] {
            assert_eq!(det().mask(t).text, t);
        }
        assert!(
            det()
                .mask("Good morning, Anna Berg")
                .text
                .contains("<PERSON>")
        );
        assert!(
            det()
                .mask("Hey, Sam! my card is gone")
                .text
                .contains("<PERSON>")
        );
        let t = "Hey, Ordered awhile back, what is the ETA in the US?";
        assert_eq!(det().mask(t).text, t);
        assert!(
            det()
                .mask("Hi, Sarah can you check my order")
                .text
                .contains("<PERSON>")
        );
    }

    /// Recall on planted phone numbers written without separators (UK national, premium-rate, North
    /// American, E.164), and the look-alikes that must stay unmasked (order and reference numbers,
    /// amounts, date stamps, account numbers). Its own seeded set, so the main fixture's counts stay put.
    #[test]
    fn separator_less_phones_planted_recall() {
        let mut rng = hone_core::rng::SeededRng::new(0x9E0_5E9);
        let digits = |rng: &mut hone_core::rng::SeededRng, n: usize| -> String {
            (0..n)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect()
        };
        let phone_frames = [
            "call me on {} after six",
            "Text {} to claim your prize",
            "my mobile is {}, ring any time",
            "ring {} for more info.",
            "Please phone {} today",
            "{} is my new number",
            "Reach our team at {} or by email",
            "ok call {}",
        ];
        let lookalike_frames = [
            "my order {} has not arrived",
            "invoice {} is wrong",
            "tracking {} says delivered",
            "ref {} please check",
            "I was charged £{} instead",
            "a payment of {} EUR went out",
            "the file backup_{}.tar failed",
            "account 1{} is frozen",
            "batch {} shipped",
            "case {} still open",
        ];
        let (mut planted, mut found) = (0usize, 0usize);
        let (mut lookalikes, mut masked_lookalikes) = (0usize, 0usize);
        let mut misses = Vec::new();
        for i in 0..600 {
            let phone = match i % 5 {
                // UK mobile, UK geographic, premium-rate (the SMS set's 09066368327), US, E.164.
                0 => format!("07{}", digits(&mut rng, 9)),
                1 => format!("0{}{}", 1 + rng.below(2), digits(&mut rng, 9)),
                2 => format!("09{}", digits(&mut rng, 9)),
                3 => format!(
                    "{}{}{}{}",
                    2 + rng.below(8),
                    digits(&mut rng, 2),
                    2 + rng.below(8),
                    digits(&mut rng, 6)
                ),
                _ if i % 10 == 4 => format!("+447{}", digits(&mut rng, 9)),
                _ => format!("447{}", digits(&mut rng, 9)),
            };
            let text = phone_frames[i % phone_frames.len()].replace("{}", &phone);
            planted += 1;
            let spans = det().detect(&text);
            if spans
                .iter()
                .any(|s| s.kind == PiiKind::Phone && text[s.start..s.end] == phone)
            {
                found += 1;
            } else {
                misses.push(text);
            }
        }
        for i in 0..400 {
            let number = match i % lookalike_frames.len() {
                // A yyyymmdd stamp with a time after it.
                6 => format!(
                    "2024{:02}{:02}{}",
                    1 + rng.below(12),
                    1 + rng.below(28),
                    digits(&mut rng, 3)
                ),
                7 => digits(&mut rng, 11),
                // Amounts and cued numbers of phone length.
                _ => format!("{}{}", 2 + rng.below(8), digits(&mut rng, 9)),
            };
            let text = lookalike_frames[i % lookalike_frames.len()].replace("{}", &number);
            lookalikes += 1;
            if det().mask(&text).text != text {
                masked_lookalikes += 1;
                misses.push(format!("FP: {text}"));
            }
        }
        let recall = found as f64 / planted as f64;
        let fp_rate = masked_lookalikes as f64 / lookalikes as f64;
        eprintln!(
            "separator-less phones: recall {found}/{planted} = {recall:.4}; look-alikes masked {masked_lookalikes}/{lookalikes} = {fp_rate:.4}"
        );
        for m in misses.iter().take(20) {
            eprintln!("  {m}");
        }
        assert!(recall >= 0.95, "recall {recall:.4}");
        assert!(fp_rate <= 0.02, "look-alikes masked {fp_rate:.4}");
    }

    #[test]
    fn fixture_checksums_valid() {
        assert_eq!(fixture::luhn_check_digit("411111111111111"), 1);
        assert_eq!(fixture::iban_check_digits("DE", "370400440532013000"), "89");
        for c in fixture::generate(7, 50) {
            assert!(!c.text.is_empty());
        }
    }
}
