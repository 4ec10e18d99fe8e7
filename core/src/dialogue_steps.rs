//! Dialogue migration steps ([`DialogueStep`]): what a release of a bot does to the
//! dialogues stored by the release before — states renamed, regrouped or dropped, data
//! fields renamed, dropped or given a default, or any reshaping in a Rust closure. Pure:
//! a step says what one dialogue becomes ([`Rewrite`]); [`run_step`](crate::run_step)
//! applies it to a whole table.
//!
//! Every step is idempotent: applied to a dialogue it already changed, it changes nothing.
//! A run that stops midway is finished by running the step again, and two runners at once
//! change each dialogue once.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::data::{validate_field, validate_state, Data};
use crate::error::{Error, Result};

/// Which states a step applies to: a state name (`"Form:name"`), or a pattern where `*`
/// stands for any run of characters (`"Form:*"`, `"*:confirm"`, `"*"`). `"*"` alone also
/// matches dialogues with no state (data only); any other pattern matches only states.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatePattern(String);

impl StatePattern {
    /// The pattern `pattern`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty pattern or one longer than a state may be.
    pub fn new(pattern: &str) -> Result<Self> {
        if pattern.is_empty() {
            return Err(Error::InvalidInput(
                "a state pattern can not be empty (\"*\" matches every dialogue)".to_owned(),
            ));
        }
        validate_state(pattern)?;
        Ok(StatePattern(pattern.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The one state it matches, when it holds no `*`.
    pub fn exact(&self) -> Option<&str> {
        (!self.0.contains('*')).then_some(self.0.as_str())
    }

    /// Whether a dialogue in `state` (`None`: no state) matches.
    pub fn matches(&self, state: Option<&str>) -> bool {
        match state {
            None => self.0 == "*",
            Some(state) => glob(&self.0, state),
        }
    }
}

impl fmt::Display for StatePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What a step makes of one dialogue.
#[derive(Debug, Clone, PartialEq)]
pub enum Rewrite {
    /// Nothing to do.
    Keep,
    /// The dialogue becomes this state and data.
    Write {
        /// The new state (`None`: no state).
        state: Option<String>,
        /// The new data.
        data: Data,
    },
    /// The dialogue is deleted.
    Delete,
}

impl Rewrite {
    /// `state` and `data` as the dialogue's new contents: a dialogue with neither is
    /// deleted (it is no dialogue), one that equals `(old_state, old_data)` is kept.
    fn to(old_state: Option<&str>, old_data: &Data, state: Option<String>, data: Data) -> Rewrite {
        if state.is_none() && data.is_empty() {
            Rewrite::Delete
        } else if state.as_deref() == old_state && &data == old_data {
            Rewrite::Keep
        } else {
            Rewrite::Write { state, data }
        }
    }
}

/// What a dialogue is, for a closure step: its state and data, which the closure changes
/// in place. Setting both to nothing deletes the dialogue.
#[derive(Debug, Clone, PartialEq)]
pub struct DialogueRow {
    /// The state (`None`: no state).
    pub state: Option<String>,
    /// The data.
    pub data: Data,
}

/// The closure of [`DialogueStep::map`].
type MapFn = Arc<dyn Fn(&mut DialogueRow) + Send + Sync>;

#[derive(Clone)]
enum Kind {
    RenameState {
        from: String,
        to: String,
    },
    RenameGroup {
        from: String,
        to: String,
    },
    DropStates {
        pattern: StatePattern,
        keep_data: bool,
    },
    RenameField {
        states: StatePattern,
        from: String,
        to: String,
    },
    DropField {
        states: StatePattern,
        field: String,
    },
    DefaultField {
        states: StatePattern,
        field: String,
        value: Value,
    },
    Map {
        states: StatePattern,
        name: String,
        f: MapFn,
    },
}

/// One change to the stored dialogues.
///
/// ```
/// use fsmstore_core::{DialogueStep, Rewrite};
/// let step = DialogueStep::rename_state("Form:nmae", "Form:name")?;
/// assert_eq!(
///     step.apply(Some("Form:nmae"), &Default::default())?,
///     Rewrite::Write { state: Some("Form:name".into()), data: Default::default() },
/// );
/// // Applied again, it changes nothing.
/// assert_eq!(step.apply(Some("Form:name"), &Default::default())?, Rewrite::Keep);
/// # Ok::<(), fsmstore_core::Error>(())
/// ```
#[derive(Clone)]
pub struct DialogueStep {
    kind: Kind,
}

impl fmt::Debug for DialogueStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DialogueStep")
            .field(&self.description())
            .finish()
    }
}

impl fmt::Display for DialogueStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

/// A group name: a state's part before its `:`.
fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.contains(':') || group.contains('*') {
        return Err(Error::InvalidInput(format!(
            "{group:?} is not a group name: a group is the part of a state before its ':' (\"Form\" of \"Form:name\"), not empty, without ':' or '*'"
        )));
    }
    validate_state(group)
}

fn validate_name(state: &str) -> Result<()> {
    if state.contains('*') {
        return Err(Error::InvalidInput(format!(
            "{state:?} is not a state name: '*' is for patterns (drop, and the states of a field step)"
        )));
    }
    validate_state(state)
}

/// A data field a step names: not empty.
fn field_name(field: &str) -> Result<()> {
    if field.is_empty() {
        return Err(Error::InvalidInput(
            "a field step needs a field name".to_owned(),
        ));
    }
    validate_field(field)
}

fn differ(what: &str, from: &str, to: &str) -> Result<()> {
    if from == to {
        return Err(Error::InvalidInput(format!(
            "renaming {what} {from:?} to itself changes nothing"
        )));
    }
    Ok(())
}

impl DialogueStep {
    /// Dialogues in state `from` move to state `to`; data untouched.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a name that is not a state name, or `from == to`.
    pub fn rename_state(from: &str, to: &str) -> Result<Self> {
        validate_name(from)?;
        validate_name(to)?;
        differ("state", from, to)?;
        Ok(DialogueStep {
            kind: Kind::RenameState {
                from: from.to_owned(),
                to: to.to_owned(),
            },
        })
    }

    /// Every state of group `from` (`"Form:…"`) moves to group `to` (`"Signup:…"`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a group that is empty or holds `:` or `*`, or
    /// `from == to`.
    pub fn rename_group(from: &str, to: &str) -> Result<Self> {
        validate_group(from)?;
        validate_group(to)?;
        differ("group", from, to)?;
        Ok(DialogueStep {
            kind: Kind::RenameGroup {
                from: from.to_owned(),
                to: to.to_owned(),
            },
        })
    }

    /// Dialogues in a state matching `pattern` are deleted (`keep_data: false`), or lose
    /// their state and keep their data (`keep_data: true`; one left with no data is
    /// deleted).
    ///
    /// # Errors
    /// As [`StatePattern::new`].
    pub fn drop_states(pattern: &str, keep_data: bool) -> Result<Self> {
        Ok(DialogueStep {
            kind: Kind::DropStates {
                pattern: StatePattern::new(pattern)?,
                keep_data,
            },
        })
    }

    /// In dialogues whose state matches `states`, data field `from` becomes `to` (its
    /// value replaces a `to` already there).
    ///
    /// # Errors
    /// As [`StatePattern::new`]; [`Error::InvalidInput`] for an empty field name or
    /// `from == to`.
    pub fn rename_field(states: &str, from: &str, to: &str) -> Result<Self> {
        field_name(from)?;
        field_name(to)?;
        differ("field", from, to)?;
        Ok(DialogueStep {
            kind: Kind::RenameField {
                states: StatePattern::new(states)?,
                from: from.to_owned(),
                to: to.to_owned(),
            },
        })
    }

    /// In dialogues whose state matches `states`, data field `field` is removed.
    ///
    /// # Errors
    /// As [`StatePattern::new`]; [`Error::InvalidInput`] for an empty field name.
    pub fn drop_field(states: &str, field: &str) -> Result<Self> {
        field_name(field)?;
        Ok(DialogueStep {
            kind: Kind::DropField {
                states: StatePattern::new(states)?,
                field: field.to_owned(),
            },
        })
    }

    /// In dialogues whose state matches `states` and whose data lacks `field`, `field`
    /// is set to `value`.
    ///
    /// # Errors
    /// As [`StatePattern::new`]; [`Error::InvalidInput`] for an empty field name or a
    /// `null` value (a missing field already reads as `null`).
    pub fn default_field(states: &str, field: &str, value: Value) -> Result<Self> {
        field_name(field)?;
        if value.is_null() {
            return Err(Error::InvalidInput(format!(
                "a default of null for field {field:?} changes nothing: a missing field reads as null"
            )));
        }
        Ok(DialogueStep {
            kind: Kind::DefaultField {
                states: StatePattern::new(states)?,
                field: field.to_owned(),
                value,
            },
        })
    }

    /// Any change: `f` gets each dialogue whose state matches `states` and changes it in
    /// place (no state and no data deletes it). `name` identifies the step in the history:
    /// change it when you change what `f` does.
    ///
    /// `f` must be idempotent — applied to a dialogue it already changed, it changes
    /// nothing — as every step is (a run that stops is finished by running it again). The
    /// runner checks it on every dialogue it changes, and stops with
    /// [`Error::Migration`] before writing one where `f` is not.
    ///
    /// # Errors
    /// As [`StatePattern::new`]; [`Error::InvalidInput`] for an empty name.
    pub fn map(
        states: &str,
        name: &str,
        f: impl Fn(&mut DialogueRow) + Send + Sync + 'static,
    ) -> Result<Self> {
        if name.trim().is_empty() {
            return Err(Error::InvalidInput(
                "a closure step needs a name (it identifies the step in the history)".to_owned(),
            ));
        }
        Ok(DialogueStep {
            kind: Kind::Map {
                states: StatePattern::new(states)?,
                name: name.to_owned(),
                f: Arc::new(f),
            },
        })
    }

    /// What the step does, in words (the history's description).
    pub fn description(&self) -> String {
        match &self.kind {
            Kind::RenameState { from, to } => format!("rename state {from} to {to}"),
            Kind::RenameGroup { from, to } => format!("rename group {from} to {to}"),
            Kind::DropStates {
                pattern,
                keep_data: false,
            } => format!("drop dialogues in {pattern}"),
            Kind::DropStates {
                pattern,
                keep_data: true,
            } => format!("clear states {pattern}, keeping data"),
            Kind::RenameField { states, from, to } => {
                format!("rename field {from} to {to} in {states}")
            }
            Kind::DropField { states, field } => format!("drop field {field} in {states}"),
            Kind::DefaultField {
                states,
                field,
                value,
            } => format!("default field {field} to {value} in {states}"),
            Kind::Map { states, name, .. } => format!("{name} in {states}"),
        }
    }

    /// The step's checksum: a SHA-256 of what it does (a closure step: of its name), so a
    /// recorded step that the code now declares differently is seen as drift.
    pub fn checksum(&self) -> String {
        let canonical = match &self.kind {
            Kind::RenameState { from, to } => format!("rename_state\0{from}\0{to}"),
            Kind::RenameGroup { from, to } => format!("rename_group\0{from}\0{to}"),
            Kind::DropStates { pattern, keep_data } => {
                format!("drop_states\0{pattern}\0{keep_data}")
            }
            Kind::RenameField { states, from, to } => {
                format!("rename_field\0{states}\0{from}\0{to}")
            }
            Kind::DropField { states, field } => format!("drop_field\0{states}\0{field}"),
            Kind::DefaultField {
                states,
                field,
                value,
            } => format!("default_field\0{states}\0{field}\0{value}"),
            Kind::Map { states, name, .. } => format!("map\0{states}\0{name}"),
        };
        crate::migrations::checksum(&canonical)
    }

    /// The one state whose dialogues the step can change, when there is one: the runner
    /// lists only those.
    pub fn only_state(&self) -> Option<&str> {
        match &self.kind {
            Kind::RenameState { from, .. } => Some(from),
            Kind::DropStates { pattern, .. } => pattern.exact(),
            Kind::RenameField { states, .. }
            | Kind::DropField { states, .. }
            | Kind::DefaultField { states, .. }
            | Kind::Map { states, .. } => states.exact(),
            Kind::RenameGroup { .. } => None,
        }
    }

    /// The step as a change of states alone, which an SQL backend makes in the database
    /// ([`Inspect::rewrite_states`](crate::Inspect::rewrite_states)): renames of a state or
    /// a group.
    pub fn state_change(&self) -> Option<crate::StateChange> {
        match &self.kind {
            Kind::RenameState { from, to } => Some(crate::StateChange::Rename {
                from: from.clone(),
                to: to.clone(),
            }),
            Kind::RenameGroup { from, to } => Some(crate::StateChange::Regroup {
                from: format!("{from}:"),
                to: format!("{to}:"),
            }),
            _ => None,
        }
    }

    /// Whether the step is a closure ([`DialogueStep::map`]).
    pub fn is_closure(&self) -> bool {
        matches!(self.kind, Kind::Map { .. })
    }

    /// What the step makes of a dialogue in `state` holding `data`.
    ///
    /// # Errors
    /// [`Error::Migration`] when a closure step leaves a state or data no write accepts
    /// (an empty state, a field that is not a name), or is not idempotent on this
    /// dialogue.
    pub fn apply(&self, state: Option<&str>, data: &Data) -> Result<Rewrite> {
        let rewrite = match &self.kind {
            Kind::RenameState { from, to } => {
                if state == Some(from.as_str()) {
                    Rewrite::Write {
                        state: Some(to.clone()),
                        data: data.clone(),
                    }
                } else {
                    Rewrite::Keep
                }
            }
            Kind::RenameGroup { from, to } => match state
                .and_then(|s| s.strip_prefix(from.as_str()))
                .and_then(|rest| rest.strip_prefix(':'))
            {
                Some(rest) => Rewrite::Write {
                    state: Some(format!("{to}:{rest}")),
                    data: data.clone(),
                },
                None => Rewrite::Keep,
            },
            Kind::DropStates { pattern, keep_data } => {
                if !pattern.matches(state) {
                    Rewrite::Keep
                } else if *keep_data {
                    Rewrite::to(state, data, None, data.clone())
                } else {
                    Rewrite::Delete
                }
            }
            Kind::RenameField { states, from, to } => match data.get(from) {
                Some(value) if states.matches(state) => {
                    let mut new = data.clone();
                    new.remove(from);
                    new.insert(to.clone(), value.clone());
                    Rewrite::to(state, data, state.map(str::to_owned), new)
                }
                _ => Rewrite::Keep,
            },
            Kind::DropField { states, field } => {
                if states.matches(state) && data.contains_key(field) {
                    let mut new = data.clone();
                    new.remove(field);
                    Rewrite::to(state, data, state.map(str::to_owned), new)
                } else {
                    Rewrite::Keep
                }
            }
            Kind::DefaultField {
                states,
                field,
                value,
            } => {
                if states.matches(state) && !data.contains_key(field) {
                    let mut new = data.clone();
                    new.insert(field.clone(), value.clone());
                    Rewrite::to(state, data, state.map(str::to_owned), new)
                } else {
                    Rewrite::Keep
                }
            }
            Kind::Map { states, f, .. } => {
                if !states.matches(state) {
                    return Ok(Rewrite::Keep);
                }
                let once = map_once(f, state, data);
                let twice = map_once(f, once.state.as_deref(), &once.data);
                if twice != once {
                    return Err(Error::Migration(format!(
                        "step \"{}\" is not idempotent: applied again to a dialogue it changed \
                         (state {:?}), it changes it again (state {:?}); a step must leave a \
                         dialogue it already changed as it is, since a run that stops is finished \
                         by running it again. Nothing was written for this dialogue",
                        self.description(),
                        once.state,
                        twice.state
                    )));
                }
                if let Some(new_state) = &once.state {
                    validate_state(new_state).map_err(|err| {
                        Error::Migration(format!("step \"{}\": {err}", self.description()))
                    })?;
                }
                for field in once.data.keys() {
                    validate_field(field).map_err(|err| {
                        Error::Migration(format!("step \"{}\": {err}", self.description()))
                    })?;
                }
                Rewrite::to(state, data, once.state, once.data)
            }
        };
        Ok(rewrite)
    }
}

fn map_once(f: &MapFn, state: Option<&str>, data: &Data) -> DialogueRow {
    let mut row = DialogueRow {
        state: state.map(str::to_owned),
        data: data.clone(),
    };
    f(&mut row);
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> Data {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn write(state: Option<&str>, value: Value) -> Rewrite {
        Rewrite::Write {
            state: state.map(str::to_owned),
            data: data(value),
        }
    }

    #[test]
    fn patterns_match_states_by_glob_and_star_alone_matches_no_state() {
        let p = |s| StatePattern::new(s).unwrap();
        assert!(p("Form:*").matches(Some("Form:name")));
        assert!(p("Form:*").matches(Some("Form:")));
        assert!(!p("Form:*").matches(Some("Forms:name")));
        assert!(!p("Form:*").matches(None));
        assert!(p("*:confirm").matches(Some("Order:confirm")));
        assert!(!p("*:confirm").matches(Some("Order:confirmed")));
        assert!(p("A*B*C").matches(Some("AxxBxxC")));
        assert!(!p("A*B*C").matches(Some("AxxCxxB")));
        assert!(p("*").matches(None));
        assert!(p("*").matches(Some("x")));
        assert!(p("Form:name").matches(Some("Form:name")));
        assert!(!p("Form:name").matches(Some("Form:name2")));
        assert_eq!(p("Form:name").exact(), Some("Form:name"));
        assert_eq!(p("Form:*").exact(), None);
        assert!(StatePattern::new("").is_err());
    }

    #[test]
    fn renames_change_only_their_states_and_twice_is_once() {
        let empty = Data::new();
        let step = DialogueStep::rename_group("Form", "Signup").unwrap();
        assert_eq!(
            step.apply(Some("Form:age"), &data(json!({"a": 1})))
                .unwrap(),
            write(Some("Signup:age"), json!({"a": 1}))
        );
        assert_eq!(
            step.apply(Some("Signup:age"), &empty).unwrap(),
            Rewrite::Keep
        );
        assert_eq!(step.apply(Some("Formal:x"), &empty).unwrap(), Rewrite::Keep);
        assert_eq!(step.apply(None, &empty).unwrap(), Rewrite::Keep);
        assert!(DialogueStep::rename_group("Form", "Form:x").is_err());
        assert!(DialogueStep::rename_group("Form", "Form").is_err());
        assert!(DialogueStep::rename_state("Form:a", "Form:a").is_err());
        assert!(DialogueStep::rename_state("Form:*", "Form:a").is_err());
        assert!(DialogueStep::rename_state("", "Form:a").is_err());
    }

    #[test]
    fn drops_delete_or_keep_the_data() {
        let d = data(json!({"a": 1}));
        let drop = DialogueStep::drop_states("Old:*", false).unwrap();
        assert_eq!(drop.apply(Some("Old:x"), &d).unwrap(), Rewrite::Delete);
        assert_eq!(drop.apply(Some("New:x"), &d).unwrap(), Rewrite::Keep);
        assert_eq!(drop.apply(None, &d).unwrap(), Rewrite::Keep);
        let clear = DialogueStep::drop_states("Old:*", true).unwrap();
        assert_eq!(
            clear.apply(Some("Old:x"), &d).unwrap(),
            write(None, json!({"a": 1}))
        );
        assert_eq!(
            clear.apply(Some("Old:x"), &Data::new()).unwrap(),
            Rewrite::Delete
        );
        assert_eq!(clear.apply(None, &d).unwrap(), Rewrite::Keep);
    }

    #[test]
    fn field_steps_touch_only_matching_states_and_are_idempotent() {
        let rename = DialogueStep::rename_field("Form:*", "nmae", "name").unwrap();
        let before = data(json!({"nmae": "Ann", "age": 3}));
        let after = write(Some("Form:x"), json!({"name": "Ann", "age": 3}));
        assert_eq!(rename.apply(Some("Form:x"), &before).unwrap(), after);
        let Rewrite::Write { data: renamed, .. } = after else {
            unreachable!()
        };
        assert_eq!(
            rename.apply(Some("Form:x"), &renamed).unwrap(),
            Rewrite::Keep
        );
        assert_eq!(
            rename.apply(Some("Other:x"), &before).unwrap(),
            Rewrite::Keep
        );

        let drop = DialogueStep::drop_field("*", "tmp").unwrap();
        assert_eq!(
            drop.apply(None, &data(json!({"tmp": 1, "k": 2}))).unwrap(),
            write(None, json!({"k": 2}))
        );
        assert_eq!(
            drop.apply(None, &data(json!({"tmp": 1}))).unwrap(),
            Rewrite::Delete,
            "no state and no data left: no dialogue"
        );
        assert_eq!(
            drop.apply(Some("S:x"), &data(json!({"tmp": 1}))).unwrap(),
            write(Some("S:x"), json!({}))
        );

        let default = DialogueStep::default_field("Form:*", "lang", json!("en")).unwrap();
        assert_eq!(
            default.apply(Some("Form:x"), &Data::new()).unwrap(),
            write(Some("Form:x"), json!({"lang": "en"}))
        );
        assert_eq!(
            default
                .apply(Some("Form:x"), &data(json!({"lang": "de"})))
                .unwrap(),
            Rewrite::Keep
        );
        assert!(DialogueStep::default_field("*", "x", Value::Null).is_err());
        assert!(DialogueStep::rename_field("*", "a", "a").is_err());
        assert!(DialogueStep::drop_field("*", "").is_err());
    }

    #[test]
    fn closures_are_checked_for_idempotence_and_valid_output() {
        let age_to_number = DialogueStep::map("Form:*", "age as a number", |row| {
            if let Some(Value::String(age)) = row.data.get("age") {
                if let Ok(n) = age.parse::<u64>() {
                    row.data.insert("age".into(), json!(n));
                }
            }
        })
        .unwrap();
        assert_eq!(
            age_to_number
                .apply(Some("Form:age"), &data(json!({"age": "30"})))
                .unwrap(),
            write(Some("Form:age"), json!({"age": 30}))
        );
        assert_eq!(
            age_to_number
                .apply(Some("Form:age"), &data(json!({"age": 30})))
                .unwrap(),
            Rewrite::Keep
        );

        let counter = DialogueStep::map("*", "count", |row| {
            let n = row.data.get("n").and_then(Value::as_i64).unwrap_or(0);
            row.data.insert("n".into(), json!(n + 1));
        })
        .unwrap();
        let err = counter.apply(Some("S:x"), &Data::new()).unwrap_err();
        assert!(
            matches!(&err, Error::Migration(m) if m.contains("not idempotent")),
            "{err}"
        );

        let empties = DialogueStep::map("*", "bad state", |row| {
            row.state = Some(String::new());
        })
        .unwrap();
        assert!(empties.apply(Some("S:x"), &Data::new()).is_err());

        let finish = DialogueStep::map("Done:*", "finish", |row| {
            row.state = None;
            row.data.clear();
        })
        .unwrap();
        assert_eq!(
            finish
                .apply(Some("Done:x"), &data(json!({"a": 1})))
                .unwrap(),
            Rewrite::Delete
        );
        assert!(DialogueStep::map("*", " ", |_| {}).is_err());
    }

    #[test]
    fn checksums_follow_what_a_step_does() {
        let a = DialogueStep::rename_state("A:x", "A:y").unwrap();
        let b = DialogueStep::rename_state("A:x", "A:z").unwrap();
        assert_ne!(a.checksum(), b.checksum());
        assert_eq!(
            a.checksum(),
            DialogueStep::rename_state("A:x", "A:y").unwrap().checksum()
        );
        assert_eq!(a.description(), "rename state A:x to A:y");
        assert_eq!(a.only_state(), Some("A:x"));
        assert_eq!(
            DialogueStep::rename_group("A", "B").unwrap().only_state(),
            None
        );
    }
}
