//! The seeded training generator: support tickets, e-mails, chat messages and forms written from hone's
//! own frames and filled from [`crate::lists`], with the span of every name, address, place and
//! organisation known by construction. Same seed, same corpus, on every machine.
//!
//! The frames are written for this generator only; hone's PII benchmark builds its set differently
//! (real messages from public datasets with values inserted) so that it measures the tagger on text it
//! was not written from.

use crate::Entity;
use crate::lists::{BENCH_HELD_OUT, LISTS, Lists, MONTHS, WEEKDAYS};
use hone_core::rng::SeededRng;

/// A generated example: text and entity spans (byte offsets, sorted, non-overlapping).
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub spans: Vec<(usize, usize, Entity)>,
}

/// Sentences with no personal data (support vocabulary, title-case words that are not names, products,
/// dates, amounts and references). `{X}` look-alike, `{M}` month, `{D}` weekday, `{Q}` amount, `{R}`
/// reference: none of them is an entity.
pub const CARRIERS: &[&str] = &[
    "I was charged twice for the same order.",
    "My card payment was declined at the shop yesterday.",
    "Why is my transfer still pending?",
    "Can you tell me how to reset my PIN?",
    "The parcel never arrived and tracking says delivered.",
    "Please cancel my subscription before the next billing date.",
    "I want a refund for order {R}.",
    "How long does a top up by bank transfer take?",
    "My {X} payment did not go through.",
    "Is there a fee for paying with {X}?",
    "The app keeps crashing when I open {X}.",
    "I paid {Q} but the invoice says more.",
    "The delivery is booked for {D} morning.",
    "Can I change the delivery date to {D}?",
    "My statement for {M} is missing a payment.",
    "I have been waiting since {M} for an answer.",
    "Unfortunately the replacement is broken too.",
    "Yesterday I tried to log in and it failed three times.",
    "Please advise what I should do next.",
    "Could you check what happened with ticket {R}?",
    "Where can I find my account number?",
    "The exchange rate you applied looks wrong.",
    "I think someone used my card without permission.",
    "Thank you for the quick reply.",
    "Any update on this?",
    "This is the third time I am writing about it.",
    "Honestly I am very disappointed with the service.",
    "Great service, the agent solved it in minutes.",
    "Do you deliver on {D}?",
    "What are your opening hours over {X}?",
    "The {X} plan is too expensive for me.",
    "I would like to upgrade to {X}.",
    "Order {R} arrived damaged.",
    "Reference {R}, amount {Q}.",
    "The ATM kept my card.",
    "Verification keeps failing on my ID.",
    "Kindly confirm receipt of this message.",
    "Looking forward to hearing from you.",
    "Sorry for the long message.",
    "See the attached screenshot.",
    "Nothing has changed since last week.",
    "Please call me back when you can.",
    "My password reset link has expired.",
    "The contactless limit seems too low.",
    "How do I add a second user to the account?",
    "Customer Service told me to wait ten days.",
    "Support closed my ticket without an answer.",
    "Billing still shows the old address.",
    "When will the {X} card be available?",
    "Direct Debit failed again this month.",
    "Is {X} accepted in your stores?",
    "New Year sale items cannot be returned?",
    "Black Friday discount was not applied.",
    "Happy to help if you need more details.",
    "Ok see you then.",
    "Call me when you get this.",
    "Running late, be there soon.",
    "Congratulations! You have won a prize, reply CLAIM now.",
    "Free entry to win {Q}, text WIN to 80082.",
    "Dear Customer, your account has been suspended.",
    "Dear Subscriber, your bonus is waiting.",
    "Hi Team, quick question about my bill.",
    "Hello Support, my order is late.",
    "Where Is My Order?",
    "Track Order",
    "Cancel Subscription",
    "Change Shipping Address",
    "Premium members get free delivery.",
    "Settings > Security > Change PIN.",
    "I bought it in the {X} sale.",
    "The screen on my {X} cracked.",
    "Product arrived on {D} {M} 12.",
    "Meeting moved to {D} at 3pm.",
    "Can you do it by end of {M}?",
    "ok i'll call u later",
    "k..k, see u tmrw",
    "where r u? im at the station lol",
    "Sorry, I'll call later.",
    "U can call me now.",
    "I cant pick the phone right now. Pls send a message",
    "Jus reached home. Going 2 sleep now.",
    "ur awarded a {Q} prize! call {R} now",
    "URGENT! Your mobile number has won a GUARANTEED prize. Call {R} from a land line.",
    "FREE entry into our weekly draw, txt WIN to {R}.",
    "Text STOP to {R} to opt out. T&Cs apply.",
    "PRIVATE! Your account statement shows {R} unredeemed points. Call {R} now.",
    "Win a {X} every WEEK, txt PLAY to {R}, 16+ only.",
    "Call FREE on {R} or text back.",
    "As a valued customer you have been selected to receive a {Q} reward!",
    "I need my card ASAP!",
    "I live in the US, can I still open an account?",
    "Can I use the card in the EU?",
    "Is there an ATM fee abroad?",
    "My PIN is blocked after 3 tries.",
    "It has been 5 times now.",
    "I was charged 3 times for 1 order.",
    "Delivery within 28 days.",
    "The transfer of {Q} took 2 days.",
    "I deposited {Q} on 5/9/24 and it is not there.",
    "It's only £200,000 but it keeps failing.",
    "Offer valid until 30th {M}.",
    "Visit www.example-shop.co.uk for details.",
    "See https://help.example.com/orders for more.",
    "I have 2 cards and 1 account.",
    "Top up 4 times a month.",
    "Order {R} status please",
    "check order {R} status",
    "wanna check the status of order {R}",
    "I bought 3 items and got 2.",
    "I'm 16, can I open an account?",
    "The 2nd payment failed.",
    "1. Open the app 2. Tap Cards 3. Choose Freeze",
    "Room 12 was booked for us.",
    "Gate 5 closes at 10pm.",
    "PO Box {R} is not a valid delivery address.",
    "My new phone arrived with 0% battery.",
    "I would like a refund ASAP.",
    "I am not happy with the service at all.",
    "What is the exchange rate for USD?",
    "Do you have an office in my country?",
    "how do i close an account in the app",
    "Good night, sweet dreams.",
    "Happy birthday! Have a great day.",
    "Miss u, come home soon",
    "Gonna be late, traffic is crazy",
    "I paid via bank transfer 2 days ago.",
    "Can I pay via {X}?",
    "Sent via my phone.",
    "It arrived 3 days late, 2 items missing.",
    "Only 18p per msg, 150p per week.",
    "Get 2 tones free, text TONE to {R}.",
];

/// Sentences with slots for entities. `{P}` a person, `{F}` a first name, `{T}` a title and last name,
/// `{A}` a street address, `{Y}` a full postal line (street, postcode, city), `{Z}` a postcode,
/// `{C}` a city, `{N}` a country, `{G}` a region, `{O}` an organisation, plus the non-entity slots of
/// [`CARRIERS`].
pub const FRAMES: &[&str] = &[
    "My name is {P} and I need help with my account.",
    "my name is {P}.",
    "I'm {P}, account holder.",
    "This is {P} speaking.",
    "{P} here, I have a problem with my card.",
    "It's {F} again about the refund.",
    "You can reach me, {P}, on the same number.",
    "I spoke to {P} yesterday and she promised a callback.",
    "Your colleague {F} said it would be sorted.",
    "{P} told me to contact you.",
    "Please ask for {T} when you call.",
    "{T} handled my complaint last time.",
    "The account is in the name of {P}.",
    "Account holder: {P}",
    "Cardholder name {P}",
    "Send the new card to {P} at {Y}.",
    "My wife {F} cannot log in.",
    "My husband {P} made the payment.",
    "My son {F} lost his card.",
    "My daughter {F} wants her own account.",
    "I am writing on behalf of my mother, {P}.",
    "The transfer to {P} has not arrived.",
    "I sent {Q} to {P} by mistake.",
    "Can I add {P} as a payee?",
    "{F} from your {X} team was very helpful.",
    "Thanks to {F} for the quick fix.",
    "Agent {F} was rude to me.",
    "Please forward this to {T}.",
    "Attention: {T}, {O}",
    "cc {P}",
    "According to {F}, the parcel is with the courier.",
    "Is {P} still working there?",
    "I was helped by {F} {R} at the counter.",
    "I live at {A}.",
    "My address is {Y}.",
    "Please deliver to {A}, {C}.",
    "Ship it to {Y}",
    "The parcel went to {A} instead of my flat.",
    "I moved from {A} to {A} in {M}.",
    "Please update my address to {A}, {Z} {C}.",
    "Billing address: {Y}",
    "Delivery address {A}, {C}, {N}",
    "Return it to our warehouse at {Y}.",
    "Our office is at {A} in {C}.",
    "The shop on {A} refused my card.",
    "Can I collect it from the branch at {A}?",
    "I am in {C} until {D}.",
    "I'm travelling to {N} next week, will my card work?",
    "I used my card in {C} and it was declined.",
    "I just moved to {C} from {N}.",
    "Is the service available in {N}?",
    "I am based in {C}, {N}.",
    "The payment came from {C}, {G}.",
    "We have stores in {C} and {C}.",
    "Flights from {C} to {C} were cancelled.",
    "I'm a student in {C}.",
    "I work for {O} and need an invoice for them.",
    "I work at {O}.",
    "Our company, {O}, wants a business account.",
    "The charge from {O} is not mine.",
    "{O} charged me {Q} twice.",
    "I got a letter from {O} about this.",
    "We are switching from {O} to you.",
    "Please send the invoice to {O}, {Y}.",
    "{P} from {O} will call you.",
    "I'm the office manager at {O} in {C}.",
    "Contract between {O} and {O}.",
    "I ordered it through {O}.",
    "Regarding my claim with {O}:",
    "{O} is my employer.",
    "Salary from {O} has not arrived.",
    "Hi {F}, thanks for getting back to me.",
    "Hello {P}, your order is on its way.",
    "Dear {T}, thank you for your patience.",
    "Good morning {F}!",
    "Meeting with {P} on {D} at {O}.",
    "{P}, {A}, {C}",
    "{P} ({O})",
    "{P} - {O} - {C}",
];

/// Opening lines. Some greet a person, some do not.
const GREETINGS: &[&str] = &[
    "Hi {F},",
    "Hello {P},",
    "Dear {T},",
    "Dear {P},",
    "Hey {F}",
    "Good morning {F},",
    "Hi,",
    "Hello,",
    "Dear Sir or Madam,",
    "Dear Customer,",
    "Hi team,",
    "Hello Support,",
    "Hey there,",
    "To whom it may concern,",
    "Bonjour {F},",
    "Hola {F},",
    "Hallo {F},",
    "Ciao {F},",
    "Olá {F},",
    "Hi there,",
];

/// Closing lines. Some are signed, some are not.
const SIGNOFFS: &[&str] = &[
    "Thanks,\n{P}",
    "Regards,\n{P}",
    "Kind regards,\n{P}\n{O}",
    "Best,\n{F}",
    "Cheers, {F}",
    "Many thanks\n{P}",
    "Sincerely,\n{T}",
    "Best wishes,\n{P}\n{A}\n{C}",
    "-- {P}",
    "Sent by {P}",
    "Thanks,\n{F} {R}",
    "Thanks",
    "Regards",
    "Thank you!",
    "Cheers",
    "Kind regards,\nCustomer",
    "Best regards,\nThe {X} team",
    "Sent from my iPhone",
    "Mit freundlichen Grüßen\n{P}",
    "Saludos,\n{P}",
    "Cordialement,\n{P}",
];

/// Form-like records.
const FORMS: &[&str] = &[
    "Name: {P}\nAddress: {Y}\nIssue: ",
    "Full name: {P}\nCompany: {O}\nCity: {C}\nMessage: ",
    "Customer: {P} | Location: {C}, {N} | Notes: ",
    "From: {P}\nSubject: ",
    "Employer: {O}\nCountry: {N}\nRequest: ",
    "Contact person: {T}\nOrganisation: {O}\nStreet: {A}\nPostcode: {Z}\nTown: {C}\nComment: ",
];

const TITLES: &[&str] = &[
    "Mr", "Mrs", "Ms", "Miss", "Dr", "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Herr", "Frau", "Mme",
    "Sra.", "M.",
];

/// Common words for the noise sentences: lower-case chat, SMS shorthand and support vocabulary, so
/// that ordinary words and numbers next to them are learned as outside any entity.
const COMMON: &[&str] = &[
    "the", "a", "an", "to", "and", "or", "but", "of", "in", "on", "at", "for", "with", "from",
    "by", "my", "your", "our", "their", "his", "her", "it", "this", "that", "i", "you", "we",
    "they", "he", "she", "is", "are", "was", "were", "be", "have", "has", "had", "do", "does",
    "did", "can", "could", "will", "would", "should", "may", "might", "must", "not", "no", "yes",
    "ok", "okay", "k", "u", "ur", "r", "n", "pls", "plz", "thx", "lol", "gud", "wat", "da", "tmrw",
    "b4", "coz", "wanna", "gonna", "txt", "msg", "call", "text", "reply", "send", "get", "got",
    "go", "going", "come", "see", "know", "need", "want", "like", "make", "take", "give", "pay",
    "paid", "buy", "order", "card", "account", "money", "cash", "bank", "transfer", "refund",
    "payment", "fee", "charge", "balance", "app", "phone", "number", "code", "pin", "password",
    "email", "address", "delivery", "parcel", "package", "item", "items", "price", "prize", "free",
    "win", "won", "claim", "offer", "now", "today", "later", "tomorrow", "tonight", "week",
    "weeks", "day", "days", "month", "months", "year", "time", "times", "hours", "mins", "minutes",
    "home", "work", "office", "shop", "store", "car", "bus", "train", "still", "just", "already",
    "again", "very", "really", "too", "so", "much", "many", "more", "less", "new", "old", "good",
    "bad", "great", "late", "early", "soon", "possible", "sure", "happy", "sorry", "problem",
    "issue", "help", "question", "answer", "status", "update", "change", "cancel", "close", "open",
    "check", "wait", "waiting", "pending", "failed", "declined", "blocked", "lost", "stolen",
    "broken", "missing", "wrong", "right", "left", "first", "last", "next", "other", "same",
    "only", "about", "after", "before", "since", "until", "when", "where", "why", "how", "what",
    "which", "who", "there", "here", "all", "any", "some", "every", "each", "one", "two", "three",
    "ten", "street", "road", "walk", "far", "near", "cross", "turn", "side", "line", "land", "box",
    "stop",
];

/// A noise sentence: common words with numbers, amounts, codes, dates and an occasional capitalised
/// or upper-case word, none of them an entity.
fn noise(g: &mut Gen<'_>, b: &mut Builder) {
    let n = 4 + g.rng.below(12);
    for i in 0..n {
        if i > 0 {
            b.lit(" ");
        }
        let r = g.rng.below(100);
        let w: String = match r {
            0..=69 => g.pick(COMMON).to_string(),
            70..=74 => capitalise(g.pick(COMMON)),
            75..=78 => g.pick(COMMON).to_uppercase(),
            79..=81 => format!("{}", 1 + g.rng.below(30)),
            82 => format!("{}", g.rng.below(100_000)),
            83 => format!("0{}", 7_000_000_000u64 + g.rng.below(999_999_999) as u64),
            84 => format!(
                "{}{}",
                ["£", "$", "€"][g.rng.below(3)],
                1 + g.rng.below(5000)
            ),
            85 => format!("{},000", 1 + g.rng.below(500)),
            86 => format!(
                "{}/{}/{}",
                1 + g.rng.below(28),
                1 + g.rng.below(12),
                10 + g.rng.below(20)
            ),
            87 => format!("{}pm", 1 + g.rng.below(12)),
            88 => format!("{}%", g.rng.below(100)),
            89 => format!("{}th", 4 + g.rng.below(25)),
            90 => g.pick(MONTHS).to_string(),
            91 => g.pick(WEEKDAYS).to_string(),
            92 => g.pick(LISTS.look_alikes).to_string(),
            93 => format!("{} {}", 1 + g.rng.below(10), capitalise(g.pick(COMMON))),
            94 => format!("{}{}", g.pick(COMMON), 1 + g.rng.below(9)),
            95 => format!("box{}", g.rng.below(1000)),
            96 => ["!", "?", "...", ":)", "&", "+", "*"][g.rng.below(7)].to_string(),
            _ => format!("{}.", g.pick(COMMON)),
        };
        b.lit(&w);
    }
    b.lit([".", "!", "?", "", "..."][g.rng.below(5)]);
}

struct Builder {
    text: String,
    spans: Vec<(usize, usize, Entity)>,
}

impl Builder {
    fn lit(&mut self, s: &str) {
        self.text.push_str(s);
    }
    fn ent(&mut self, s: &str, e: Entity) {
        let start = self.text.len();
        self.text.push_str(s);
        self.spans.push((start, self.text.len(), e));
    }
}

fn is_latin(s: &str) -> bool {
    s.chars()
        .all(|c| (c as u32) < 0x250 || c.is_whitespace() || c == '’')
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

struct Gen<'a> {
    rng: SeededRng,
    l: &'a Lists,
}

impl Gen<'_> {
    fn pick<'b>(&mut self, xs: &'b [&'static str]) -> &'static str
    where
        'static: 'b,
    {
        xs[self.rng.below(xs.len())]
    }

    fn first(&mut self) -> &'static str {
        self.pick(&LISTS.first)
    }

    fn last_like(&mut self, first: &str) -> &'static str {
        // Keep a name in one script: an Arabic first name with a Latin surname is rare in real data.
        let want = is_latin(first);
        for _ in 0..20 {
            let l = self.pick(&LISTS.last);
            if is_latin(l) == want {
                return l;
            }
        }
        self.pick(&LISTS.last)
    }

    fn person(&mut self) -> String {
        let f = self.first();
        let l = self.last_like(f);
        if !is_latin(f) {
            return if f.chars().any(|c| ('\u{3040}'..='\u{9FFF}').contains(&c)) {
                format!("{l}{f}")
            } else {
                format!("{f} {l}")
            };
        }
        match self.rng.below(20) {
            0..=10 => format!("{f} {l}"),
            11..=13 => f.to_string(),
            14 | 15 => {
                let m = self.first();
                format!("{f} {m} {l}")
            }
            16 => {
                let l2 = self.last_like(f);
                format!("{f} {l}-{l2}")
            }
            17 => format!("{}. {l}", f.chars().next().unwrap_or('A')),
            18 => format!("{f} {l}"),
            _ => {
                let m = self.first();
                format!("{f} {}. {l}", m.chars().next().unwrap_or('A'))
            }
        }
    }

    fn number(&mut self) -> String {
        let cap = if self.rng.chance(0.7) { 120 } else { 4000 };
        let n = 1 + self.rng.below(cap);
        if self.rng.chance(0.08) {
            format!("{n}{}", ["a", "b", "A", "B", "c"][self.rng.below(5)])
        } else {
            n.to_string()
        }
    }

    fn street_name(&mut self) -> String {
        if self.rng.chance(0.6) {
            self.pick(&LISTS.street_names).to_string()
        } else {
            let l = self.pick(&LISTS.last);
            if is_latin(l) {
                l.to_string()
            } else {
                self.pick(&LISTS.street_names).to_string()
            }
        }
    }

    fn street(&mut self) -> String {
        let name = self.street_name();
        let num = self.number();
        match self.rng.below(10) {
            0..=4 => {
                let t = self.pick(self.l.street_types);
                let base = format!("{num} {name} {t}");
                match self.rng.below(8) {
                    0 => format!(
                        "{} {}, {base}",
                        self.pick(self.l.units),
                        1 + self.rng.below(40)
                    ),
                    1 => format!(
                        "{base}, {} {}",
                        self.pick(self.l.units),
                        1 + self.rng.below(40)
                    ),
                    _ => base,
                }
            }
            5 | 6 => {
                let stem = name.split(' ').next().unwrap_or("Linden").to_string();
                let suf = self.pick(self.l.street_compound);
                if self.rng.chance(0.2) {
                    format!("{stem} {} {num}", capitalise(suf))
                } else {
                    format!("{stem}{suf} {num}")
                }
            }
            7 => {
                let p = self.pick(self.l.street_prefixes);
                let of = self.pick(self.l.street_of);
                format!("{num} {p} {of}{name}")
            }
            _ => {
                let p = self.pick(self.l.street_prefixes);
                let of = self.pick(self.l.street_of);
                if self.rng.chance(0.3) {
                    format!("{p} {of}{name}, {num}")
                } else {
                    format!("{p} {of}{name} {num}")
                }
            }
        }
    }

    fn postcode(&mut self) -> String {
        let d = |r: &mut SeededRng| char::from(b'0' + r.below(10) as u8);
        let a = |r: &mut SeededRng| char::from(b'A' + r.below(26) as u8);
        let r = &mut self.rng;
        match r.below(5) {
            0 => format!("{}{}{} {}{}{}", a(r), a(r), d(r), d(r), a(r), a(r)),
            1 => (0..5).map(|_| d(r)).collect(),
            2 => format!("{}{}{}{} {}{}", d(r), d(r), d(r), d(r), a(r), a(r)),
            3 => format!("{}{}{} {}{}{}", a(r), d(r), a(r), d(r), a(r), d(r)),
            _ => format!("{}{}{}{}-{}{}{}", d(r), d(r), d(r), d(r), d(r), d(r), d(r)),
        }
    }

    fn org(&mut self) -> String {
        let coined = |g: &mut Self| loop {
            let a = g.pick(g.l.org_parts);
            let b = g.pick(g.l.org_parts);
            let w = capitalise(&format!("{a}{b}"));
            if a != b && !BENCH_HELD_OUT.contains(&w.as_str()) {
                return w;
            }
        };
        let last = |g: &mut Self| loop {
            let l = g.pick(&LISTS.last);
            if is_latin(l) && !l.contains(' ') {
                return l;
            }
        };
        match self.rng.below(9) {
            0 | 1 => format!("{} {}", coined(self), self.pick(self.l.org_industry)),
            2 => format!("{} {}", last(self), self.pick(self.l.org_industry)),
            3 => format!("{} & {}", last(self), last(self)),
            4 => format!("{} {}", coined(self), self.pick(&LISTS.org_legal)),
            5 => format!(
                "{} {} {}",
                last(self),
                self.pick(self.l.org_industry),
                self.pick(&LISTS.org_legal)
            ),
            6 => format!("{} {}", last(self), self.pick(&LISTS.org_legal)),
            7 => format!("{} and {}", last(self), last(self)),
            _ => format!(
                "{} {} {}",
                capitalise(self.pick(self.l.org_parts)),
                self.pick(self.l.org_industry),
                self.pick(&LISTS.org_legal)
            ),
        }
    }

    fn fill(&mut self, b: &mut Builder, template: &str) {
        let mut rest = template;
        while let Some(i) = rest.find('{') {
            b.lit(&rest[..i]);
            let slot = rest.as_bytes().get(i + 1).copied().unwrap_or(b'?');
            rest = &rest[(i + 3).min(rest.len())..];
            match slot {
                b'P' => {
                    let p = self.person();
                    b.ent(&p, Entity::Person)
                }
                b'F' => {
                    let f = self.first();
                    b.ent(f, Entity::Person)
                }
                b'T' => {
                    let t = self.pick(TITLES);
                    b.lit(t);
                    b.lit(" ");
                    let f = self.first();
                    let l = if self.rng.chance(0.2) {
                        self.person()
                    } else {
                        self.last_like(f).to_string()
                    };
                    b.ent(&l, Entity::Person)
                }
                b'A' => {
                    let s = self.street();
                    b.ent(&s, Entity::Address)
                }
                b'Y' => {
                    let s = self.street();
                    b.ent(&s, Entity::Address);
                    let z = self.postcode();
                    let c = self.pick(&LISTS.cities);
                    match self.rng.below(4) {
                        0 => {
                            b.lit(", ");
                            b.ent(&z, Entity::Address);
                            b.lit(" ");
                            b.ent(c, Entity::Location);
                        }
                        1 => {
                            b.lit(", ");
                            b.ent(c, Entity::Location);
                            b.lit(" ");
                            b.ent(&z, Entity::Address);
                        }
                        2 => {
                            b.lit(", ");
                            b.ent(c, Entity::Location);
                            b.lit(", ");
                            let g = self.pick(self.l.regions);
                            b.ent(g, Entity::Location);
                            b.lit(" ");
                            b.ent(&z, Entity::Address);
                        }
                        _ => {
                            b.lit(", ");
                            b.ent(c, Entity::Location);
                        }
                    }
                }
                b'Z' => {
                    let z = self.postcode();
                    b.ent(&z, Entity::Address)
                }
                b'C' => {
                    let c = self.pick(&LISTS.cities);
                    b.ent(c, Entity::Location)
                }
                b'N' => {
                    let c = self.pick(&LISTS.countries);
                    b.ent(c, Entity::Location)
                }
                b'G' => {
                    let g = self.pick(self.l.regions);
                    b.ent(g, Entity::Location)
                }
                b'O' => {
                    let o = self.org();
                    b.ent(&o, Entity::Org)
                }
                b'X' => {
                    let x = self.pick(self.l.look_alikes);
                    b.lit(x)
                }
                b'M' => {
                    let m = self.pick(MONTHS);
                    b.lit(m)
                }
                b'D' => {
                    let d = self.pick(WEEKDAYS);
                    b.lit(d)
                }
                b'Q' => {
                    let q = format!(
                        "{}{}.{:02}",
                        ["£", "$", "€", "EUR ", "USD "][self.rng.below(5)],
                        1 + self.rng.below(900),
                        self.rng.below(100)
                    );
                    b.lit(&q)
                }
                b'R' => {
                    let r = format!(
                        "{}{}",
                        ["#", "ORD-", "REF ", "", "No. "][self.rng.below(5)],
                        10_000 + self.rng.below(9_000_000)
                    );
                    b.lit(&r)
                }
                _ => b.lit("?"),
            }
        }
        b.lit(rest);
    }

    fn sentence(&mut self, b: &mut Builder) {
        let r = self.rng.uniform();
        if r < 0.45 {
            let f = self.pick(FRAMES);
            self.fill(b, f);
        } else if r < 0.8 {
            let c = self.pick(CARRIERS);
            self.fill(b, c);
        } else {
            noise(self, b);
        }
    }

    fn example(&mut self) -> Example {
        let mut b = Builder {
            text: String::new(),
            spans: Vec::new(),
        };
        let sep = |g: &mut Self| if g.rng.chance(0.3) { "\n" } else { " " };
        if self.rng.chance(0.08) {
            let f = self.pick(FORMS);
            self.fill(&mut b, f);
            self.sentence(&mut b);
            return Example {
                text: b.text,
                spans: b.spans,
            };
        }
        if self.rng.chance(0.3) {
            let g = self.pick(GREETINGS);
            self.fill(&mut b, g);
            let s = sep(self);
            b.lit(s);
        }
        let n = 1 + self.rng.below(3);
        for i in 0..n {
            if i > 0 {
                b.lit(" ");
            }
            self.sentence(&mut b);
        }
        if self.rng.chance(0.3) {
            let s = sep(self);
            b.lit(s);
            let so = self.pick(SIGNOFFS);
            self.fill(&mut b, so);
        }
        // Some messages are written in capitals (offsets stay valid: ASCII only).
        if b.text.is_ascii() && self.rng.chance(0.03) {
            b.text = b.text.to_ascii_uppercase();
        }
        Example {
            text: b.text,
            spans: b.spans,
        }
    }
}

/// `n` examples from `seed`.
pub fn corpus(seed: u64, n: usize) -> Vec<Example> {
    let mut g = Gen {
        rng: SeededRng::new(seed ^ 0x6E65_725F_636F_7270),
        l: &LISTS,
    };
    (0..n).map(|_| g.example()).collect()
}

/// The generator's static text (frames, greetings, sign-offs, forms, titles), for the fingerprint.
pub fn frames_for_fingerprint() -> Vec<&'static str> {
    let mut v = Vec::new();
    for part in [CARRIERS, FRAMES, GREETINGS, SIGNOFFS, FORMS, TITLES, COMMON] {
        v.extend_from_slice(part);
        v.push("\u{0}");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_deterministic_and_its_spans_cut_the_text_at_the_values() {
        let a = corpus(7, 300);
        let b = corpus(7, 300);
        assert_eq!(
            a.iter().map(|e| &e.text).collect::<Vec<_>>(),
            b.iter().map(|e| &e.text).collect::<Vec<_>>()
        );
        let mut kinds = [0usize; 4];
        for e in &a {
            let mut last = 0;
            for &(s, t, k) in &e.spans {
                assert!(s >= last && t > s && t <= e.text.len(), "{e:?}");
                let v = &e.text[s..t];
                assert_eq!(v.trim(), v, "span with spaces around it in {e:?}");
                last = t;
                kinds[k as usize] += 1;
            }
            assert!(!e.text.contains('{'), "unfilled slot in {:?}", e.text);
        }
        assert!(kinds.iter().all(|&k| k > 20), "{kinds:?}");
    }
}
