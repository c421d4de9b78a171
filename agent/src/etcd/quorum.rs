//! Whether a membership change keeps the cluster able to commit. etcd counts only voting
//! members (not learners) towards quorum: `voters / 2 + 1` of them must answer. A change is
//! refused when, right after it, fewer voting members would answer than the new quorum.

use std::fmt;

/// A member as the quorum rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub id: u64,
    pub name: String,
    pub learner: bool,
    /// Whether it answered a status request just now.
    pub answers: bool,
}

/// How many voting members must answer for `voters` to commit.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Why a change was refused, said for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Removing `id`: refused when it is the last voting member, or when the voting members left
/// that answer are fewer than the quorum of the smaller cluster.
pub fn check_remove(members: &[Vote], id: u64) -> Result<(), Refused> {
    let target = find(members, id)?;
    if target.learner {
        return Ok(());
    }
    let voters = members.iter().filter(|m| !m.learner).count();
    if voters <= 1 {
        return Err(Refused(format!(
            "{} is the only voting member: removing it ends the cluster (to start again from a \
             snapshot, use mc etcd restore)",
            label(target)
        )));
    }
    let left: Vec<&Vote> = members
        .iter()
        .filter(|m| !m.learner && m.id != id)
        .collect();
    let answering: Vec<&Vote> = left.iter().copied().filter(|m| m.answers).collect();
    let need = quorum(left.len());
    if answering.len() < need {
        return Err(Refused(format!(
            "removing {} would lose quorum: the {} voting members left need {need} answering, \
             but only {} answer ({}); bring back {} first",
            label(target),
            left.len(),
            answering.len(),
            names(&answering),
            names(
                &left
                    .iter()
                    .copied()
                    .filter(|m| !m.answers)
                    .collect::<Vec<_>>()
            ),
        )));
    }
    Ok(())
}

/// Promoting learner `id` to a voter: refused when it does not answer or when, counted as a
/// voter, the answering voters would be fewer than the quorum of the larger cluster.
pub fn check_promote(members: &[Vote], id: u64) -> Result<(), Refused> {
    let target = find(members, id)?;
    if !target.learner {
        return Ok(());
    }
    if !target.answers {
        return Err(Refused(format!(
            "{} does not answer: a learner is promoted only once it runs and has caught up",
            label(target)
        )));
    }
    let voters = members.iter().filter(|m| !m.learner).count() + 1;
    let answering = members
        .iter()
        .filter(|m| (!m.learner || m.id == id) && m.answers)
        .count();
    let need = quorum(voters);
    if answering < need {
        return Err(Refused(format!(
            "promoting {} would lose quorum: {voters} voting members need {need} answering, but \
             only {answering} would; remove the dead members first (mc etcd remove NAME)",
            label(target)
        )));
    }
    Ok(())
}

fn find(members: &[Vote], id: u64) -> Result<&Vote, Refused> {
    members
        .iter()
        .find(|m| m.id == id)
        .ok_or_else(|| Refused(format!("no member with id {id:x}")))
}

fn label(m: &Vote) -> String {
    if m.name.is_empty() {
        format!("member {:x} (not started yet)", m.id)
    } else {
        format!("member {} ({:x})", m.name, m.id)
    }
}

fn names(members: &[&Vote]) -> String {
    if members.is_empty() {
        return "none".to_string();
    }
    members
        .iter()
        .map(|m| {
            if m.name.is_empty() {
                format!("{:x}", m.id)
            } else {
                m.name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Vote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&label(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: u64, name: &str, learner: bool, answers: bool) -> Vote {
        Vote {
            id,
            name: name.into(),
            learner,
            answers,
        }
    }

    #[test]
    fn quorum_is_a_strict_majority_of_voters() {
        let q: Vec<usize> = (1..=7).map(quorum).collect();
        assert_eq!(q, [1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn a_dead_member_of_three_can_be_removed_but_not_a_live_one() {
        let members = [
            v(1, "a", false, true),
            v(2, "b", false, true),
            v(3, "c", false, false),
        ];
        check_remove(&members, 3).unwrap();
        let err = check_remove(&members, 1).unwrap_err().to_string();
        assert!(
            err.contains("removing member a (1) would lose quorum"),
            "{err}"
        );
        assert!(err.contains("only 1 answer (b)"), "{err}");
        assert!(err.contains("bring back c first"), "{err}");
    }

    #[test]
    fn five_shrink_to_three_while_all_answer() {
        let mut members: Vec<Vote> = (1..=5)
            .map(|i| v(i, &format!("n{i}"), false, true))
            .collect();
        check_remove(&members, 5).unwrap();
        members.pop();
        check_remove(&members, 4).unwrap();
        members.pop();
        check_remove(&members, 3).unwrap();
        // Two left, one dead: removing the live one leaves nobody answering.
        let pair = [v(1, "n1", false, true), v(2, "n2", false, false)];
        check_remove(&pair, 2).unwrap();
        assert!(check_remove(&pair, 1).is_err());
    }

    #[test]
    fn the_last_voter_is_never_removed_and_learners_always_can_be() {
        let members = [v(1, "solo", false, true), v(2, "", true, false)];
        let err = check_remove(&members, 1).unwrap_err().to_string();
        assert!(err.contains("only voting member"), "{err}");
        check_remove(&members, 2).unwrap();
        assert!(check_remove(&members, 9)
            .unwrap_err()
            .to_string()
            .contains("no member with id 9"));
    }

    #[test]
    fn promotion_needs_a_live_learner_and_a_quorum_after() {
        let members = [
            v(1, "a", false, true),
            v(2, "b", false, true),
            v(3, "c", false, false),
            v(4, "d", true, true),
        ];
        // Four voters need three: a, b and d answer.
        check_promote(&members, 4).unwrap();
        let silent = [v(1, "a", false, true), v(4, "d", true, false)];
        assert!(check_promote(&silent, 4)
            .unwrap_err()
            .to_string()
            .contains("does not answer"));
        let two_dead = [
            v(1, "a", false, true),
            v(2, "b", false, false),
            v(3, "c", false, false),
            v(4, "d", true, true),
        ];
        let err = check_promote(&two_dead, 4).unwrap_err().to_string();
        assert!(err.contains("4 voting members need 3 answering"), "{err}");
        // A voter already: nothing to check.
        check_promote(&members, 1).unwrap();
    }
}
