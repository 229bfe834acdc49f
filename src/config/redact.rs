//! Keeping the values of `${NAME}` substitutions (often secrets) out of config
//! error messages: what a value came from, and messages with it shown as `${NAME}`.
//! Shared by the substitution ([`super::env_vars`]) and the error report.

/// A variable a value came from, to keep its value out of messages.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Used {
    pub name: String,
    pub value: String,
}

// Not derived: the value may be a secret.
impl std::fmt::Debug for Used {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Used({}, <redacted>)", self.name)
    }
}

/// Shortest value kept out of messages. Shorter ones (`11`, `on`) are no secret,
/// and replacing them would garble messages that merely contain those characters.
const MIN_REDACTED_LEN: usize = 4;

/// `message` with every value substituted shown as the `${NAME}` it came from.
pub(super) fn redact(message: &str, used: &[Used]) -> String {
    let mut out = message.to_string();
    for u in used {
        if u.value.len() >= MIN_REDACTED_LEN && out.contains(&u.value) {
            out = out.replace(&u.value, &format!("${{{}}}", u.name));
        }
    }
    out
}
