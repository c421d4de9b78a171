//! `mc`: the molten node agent.
