//! Every workflow kind's plan, derived from the `steps` of its row in
//! `lifeboat_core::server_actions!`: a list of step statics, or a function
//! of the params (in the file of its steps) when the plan depends on them.
//! A row without `steps` (a record update) has no steps.

use super::step::Step;
use crate::compute::workflows::WorkflowKind;

/// Generates [`steps_of`] from the action list.
macro_rules! define_plans {
    (@plan $k:ident) => { vec![] };
    (@plan $k:ident [$($($st:ident)::+),* $(,)?]) => { vec![$(&$($st)::+),*] };
    (@plan $k:ident ($($p:ident)::+)) => { $($p)::+($k) };
    ($(
        $(#[$m:meta])* $var:ident = $s:literal $(as $base:ident)? { $($field:ident : $val:expr),* $(,)? }
        $(request $(#[$rm:meta])* $req:ident $({ $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? })?
            $(kind($kx:expr))? => $($h:ident)::+)?
        $(params { $($(#[$pm:meta])* $pf:ident : $pt:ty),* $(,)? })?
        $(steps $plan:tt)?
    ),+ $(,)?) => {
        /// The steps of a workflow, given its kind and params.
        pub(crate) fn steps_of(k: &WorkflowKind) -> Vec<&'static Step> {
            #[allow(unused_imports)]
            use super::{build, build::*, images, images::*, moves, moves::*, power, power::*};
            #[allow(unused_imports)]
            use crate::*;
            match k {
                $(WorkflowKind::$var(_) => define_plans!(@plan k $($plan)?),)+
            }
        }
    };
}

lifeboat_core::server_actions!(define_plans);
