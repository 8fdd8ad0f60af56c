//! The store logic written once over the ordered key-value seam.
pub(crate) mod seam;
