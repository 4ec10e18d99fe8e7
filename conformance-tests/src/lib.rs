//! The conformance suite every fsmstore backend passes.
//!
//! Every case is a public `async fn(Ctx)` in [`cases`], grouped by module: `keys`, `state`,
//! `data`, `update`, `transition`, `lifecycle`, `payload`, `persistence`, `inspect`, `reference` (the storage group) and
//! `migrations` (the schema group). A case panics on failure, like a test.
//!
//! A backend implements [`Backend`] (open a storage or a migrator with given options,
//! clean up a case's tables) and expands the suite into one named test per case:
//!
//! ```ignore
//! fsmstore_conformance::conformance_suite!(storage: my_backend);
//! fsmstore_conformance::conformance_suite!(migrations: my_backend);
//! // where: async fn my_backend() -> Option<std::sync::Arc<dyn fsmstore_conformance::Backend>>
//! ```
//!
//! Each case runs on its own FSM table and version table (see [`Ctx`]), so cases run in
//! parallel and never see each other's rows. [`run_suite`] runs a whole group and reports
//! each case, for tools (the `fsmstore conformance` command).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod backend;
pub mod cases;
mod ctx;
pub mod faults;
pub mod footprint;
mod harness;
pub mod netns;
mod runner;

pub use backend::{Backend, Capabilities, MemoryBackend};
pub use ctx::Ctx;
/// The contract crate, for the macros: a third-party backend runs the suite with
/// `fsmstore-conformance` as its only extra dev-dependency.
#[doc(hidden)]
pub use fsmstore_core as __core;
pub use harness::{Needs, Suite};
pub use runner::{
    aiogram_layout_cases, aiogram_layout_own_cases, block_on, block_on_current_thread,
    block_on_threads, dialogue_migration_cases, migration_cases, run_case, run_case_in, run_suite,
    run_test, run_test_in, storage_cases, storage_only_cases, stored_row_cases, unreachable,
    updated_at_cases, BoxCase, Case, CaseReport,
};

/// Expands the suite into one `#[test]` per case.
///
/// `$factory` is an `async fn() -> Option<Arc<dyn Backend>>` (or a closure returning such
/// a future): `None` skips the test (a server that is unreachable; see [`unreachable()`]).
///
/// * `conformance_suite!(storage: factory)`: the storage group;
/// * `conformance_suite!(migrations: factory)`: the schema group (SQL backends);
/// * `conformance_suite!(all: factory)`: both;
/// * `conformance_suite!(stored_rows: factory)`: rows another program wrote, put in with
///   [`Backend::execute_raw`] (SQL backends);
/// * `conformance_suite!(aiogram_layout: factory)`: the storage group in the layout of
///   `aiogram-sqlalchemy-storage` ([`Layout::AiogramSqlalchemy`](fsmstore_core::Layout)),
///   minus the cases that need `updated_at`, plus the cases of that layout (`aiogram`).
///   Expand it in a module of its own: its tests have the storage group's names.
#[macro_export]
macro_rules! conformance_suite {
    (storage: $factory:expr) => {
        $crate::__storage_cases!(__expand_tests, $factory);
        $crate::__updated_at_cases!(__expand_tests, $factory);
    };
    (migrations: $factory:expr) => {
        $crate::__migration_cases!(__expand_tests, $factory);
    };
    (all: $factory:expr) => {
        $crate::conformance_suite!(storage: $factory);
        $crate::conformance_suite!(migrations: $factory);
        $crate::__dialogue_migration_cases!(__expand_tests, $factory);
    };
    (aiogram_layout: $factory:expr) => {
        $crate::__storage_cases!(__expand_layout_tests, $factory);
        $crate::__aiogram_layout_cases!(__expand_layout_tests, $factory);
    };
    (stored_rows: $factory:expr) => {
        $crate::__stored_row_cases!(__expand_tests, $factory);
    };
}

/// The storage group: the one list of its cases.
#[macro_export]
#[doc(hidden)]
macro_rules! __storage_cases {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! { $($args)* ;
            keys::users_in_one_chat_are_independent,
            keys::negative_ids_are_distinct_keys,
            keys::threads_are_distinct_keys,
            keys::bot_ids_share_rows_unless_asked,
            keys::non_default_destiny_needs_with_destiny,
            state::state_absent_is_none,
            state::set_state_then_get,
            state::set_state_overwrites,
            state::set_state_none_clears,
            state::empty_state_is_rejected,
            state::long_state_is_rejected,
            state::state_does_not_touch_data,
            data::data_absent_is_empty,
            data::set_data_then_get,
            data::set_data_replaces_whole_object,
            data::set_empty_data_clears,
            data::data_does_not_touch_state,
            data::get_value_present_missing_and_null,
            data::get_record_returns_state_and_data,
            data::get_data_returns_an_owned_copy,
            update::update_data_on_absent_key_creates,
            update::update_data_merges_and_returns,
            update::update_data_overwrites_top_level_fields,
            update::update_data_empty_patch_writes_nothing,
            update::update_data_keeps_null,
            update::update_data_replaces_nested_objects,
            update::concurrent_update_data_cold_key,
            update::concurrent_update_data_warm_key,
            update::concurrent_writers_on_distinct_keys,
            coalesce::many_writers_each_get_their_own_answer,
            coalesce::writers_of_one_key_lose_nothing_in_batches,
            coalesce::batched_values_come_back_byte_for_byte,
            coalesce::a_refused_write_fails_only_its_own_call,
            coalesce::no_batches_when_turned_off,
            transition::transition_on_absent_key_creates,
            transition::transition_sets_state_and_merges,
            transition::transition_to_no_state,
            transition::transition_with_empty_patch_moves_the_state,
            transition::invalid_transition_writes_nothing,
            transition::concurrent_transitions_lose_nothing,
            transition::dialogue_walks_a_typed_form,
            lifecycle::clear_removes_state_and_data,
            lifecycle::row_holding_neither_is_deleted,
            lifecycle::clear_of_absent_key_is_fine,
            lifecycle::set_record_replaces_state_and_data,
            lifecycle::clearing_state_and_data_at_once_leaves_no_row,
            lifecycle::one_connection_serves_calls_and_whole_table_operations,
            lifecycle::a_caller_is_served_while_another_calls_back_to_back,
            lifecycle::teloxide_scenario,
            lifecycle::aiogram_storage_semantics,
            payload::unicode_keys_and_values,
            payload::one_mib_value,
            payload::oversized_data_is_rejected_and_nothing_lost,
            payload::many_fields_round_trip,
            payload::typed_helpers_round_trip,
            payload::data_not_fitting_the_type_is_a_mismatch,
            payload::data_limit_is_exact,
            persistence::data_persists_across_reopen,
            persistence::calls_after_close_fail,
            persistence::close_twice_is_fine,
            inspect::inspect_lists_rows_by_id_and_state,
            inspect::inspect_get_row_by_built_id,
            inspect::inspect_stats_counts_states,
            inspect::put_row_carries_the_write_time_and_keeps_a_later_row,
            inspect::a_copy_moves_every_row_and_verifies,
            dialogues::each_step_kind_changes_what_it_names,
            dialogues::a_dry_run_counts_and_writes_nothing,
            dialogues::a_step_cut_short_is_finished_by_running_it_again,
            dialogues::two_runners_at_once_change_each_dialogue_once,
            dialogues::a_bot_writing_during_a_step_loses_nothing,
            dialogues::old_and_new_code_share_the_table_during_a_rename,
            dialogues::unknown_states_follow_the_policy,
            isolation::locked_read_modify_write_loses_nothing,
            isolation::distinct_keys_do_not_wait,
            isolation::a_lock_wait_times_out,
            isolation::a_zero_timeout_takes_a_free_key_and_refuses_a_held_one,
            isolation::a_used_up_lock_pool_still_answers_within_the_timeout,
            isolation::the_lock_pool_has_a_size_of_its_own,
            isolation::no_lock_after_close,
            isolation::a_cancelled_holder_frees_the_key,
            isolation::killing_the_holders_session_frees_the_key,
            reference::matches_memory_storage_on_random_operations,
            adversarial::nul_characters_are_refused_everywhere,
            adversarial::nesting_at_the_limit_round_trips_and_deeper_is_refused,
            adversarial::numbers_round_trip_by_value,
            adversarial::ids_differing_in_trailing_space_or_case_are_distinct,
            adversarial::hostile_inputs_match_memory_storage,
        }
    };
}

/// The storage cases that need `updated_at` (purging by age, expiry): fsmstore's layout
/// only.
#[macro_export]
#[doc(hidden)]
macro_rules! __updated_at_cases {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! { $($args)* ;
            inspect::purge_removes_only_old_rows,
            inspect::a_row_at_the_cutoff_is_kept,
            expiry::an_expired_row_reads_as_absent,
            expiry::a_write_to_an_expired_row_starts_from_empty,
            expiry::batched_writes_to_expired_rows_start_from_empty,
            expiry::a_write_keeps_the_row_alive,
            expiry::expired_rows_are_counted_and_purged,
            expiry::a_copied_row_expires_when_it_would_have_at_its_source,
            expiry::a_dialogue_migration_keeps_the_ttl,
        }
    };
}

/// The cases of the aiogram layout: its schema rules, what it refuses, its text forms.
#[macro_export]
#[doc(hidden)]
macro_rules! __aiogram_layout_cases {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! { $($args)* ;
            aiogram::opening_creates_the_table_at_version_1,
            aiogram::empty_and_null_text_read_as_empty_data,
            aiogram::rows_are_emptied_never_deleted,
            aiogram::python_json_text_reads_by_value,
            aiogram::what_fsmstore_writes_is_json_text,
            aiogram::text_that_is_not_json_is_corrupt_data,
            aiogram::features_needing_updated_at_name_the_upgrade,
            aiogram::an_unrecorded_table_is_adopted,
            aiogram::a_table_in_fsmstore_layout_is_refused,
            aiogram::migrate_up_keeps_every_row,
            stored::untouched_fields_keep_their_stored_numbers,
            stored::unreadable_numbers_are_corrupt_and_nothing_is_written,
            stored::odd_stored_rows_answer_alike,
            stored::one_corrupt_row_never_hides_the_others,
        }
    };
}

/// Rows another program wrote, put in with the backend's own SQL
/// ([`Backend::execute_raw`]): both layouts, SQL backends.
#[macro_export]
#[doc(hidden)]
macro_rules! __stored_row_cases {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! { $($args)* ;
            stored::untouched_fields_keep_their_stored_numbers,
            stored::unreadable_numbers_are_corrupt_and_nothing_is_written,
            stored::one_corrupt_row_never_hides_the_others,
        }
    };
}

/// The dialogue-migration group: the one list of its cases.
#[macro_export]
#[doc(hidden)]
macro_rules! __dialogue_migration_cases {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! { $($args)* ;
            dialogues::declared_steps_run_once_and_are_recorded,
            dialogues::an_edited_step_is_drift,
            dialogues::instances_starting_at_once_run_each_step_once,
            dialogues::a_killed_migration_is_resumed,
            dialogues::older_code_leaves_newer_steps_alone,
        }
    };
}

/// The schema group: the one list of its cases.
#[macro_export]
#[doc(hidden)]
macro_rules! __migration_cases {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback! { $($args)* ;
            migrations::migrate_up_down_up,
            migrations::downgrade_and_upgrade_keep_rows,
            migrations::ensure_schema_is_idempotent,
            migrations::concurrent_ensure_schema,
            migrations::relative_targets_move_one_step,
            migrations::drift_is_detected,
            migrations::schema_newer_than_code_is_refused,
            migrations::outdated_schema_names_the_fix,
            migrations::upgrade_policy_migrates_on_open,
            migrations::stamp_records_without_running,
            migrations::history_reports_applied_and_pending,
            migrations::failing_migration_releases_the_lock,
            migrations::closing_the_handle_closes_every_view,
            migrations::drop_tables_removes_both_tables,
        }
    };
}

#[macro_export]
#[doc(hidden)]
macro_rules! __expand_tests {
    ($factory:expr ; $($group:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::run_test($factory, stringify!($name), |ctx| -> $crate::BoxCase {
                    ::std::boxed::Box::pin($crate::cases::$group::$name(ctx))
                });
            }
        )*
    };
}

#[macro_export]
#[doc(hidden)]
macro_rules! __expand_layout_tests {
    ($factory:expr ; $($group:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::run_test_in(
                    $factory,
                    $crate::__core::Layout::AiogramSqlalchemy,
                    stringify!($name),
                    |ctx| -> $crate::BoxCase {
                        ::std::boxed::Box::pin($crate::cases::$group::$name(ctx))
                    },
                );
            }
        )*
    };
}

#[macro_export]
#[doc(hidden)]
macro_rules! __registry {
    (() ; $($group:ident :: $name:ident),* $(,)?) => {
        vec![
            $(
                $crate::Case {
                    group: stringify!($group),
                    name: stringify!($name),
                    run: |ctx| -> $crate::BoxCase {
                        ::std::boxed::Box::pin($crate::cases::$group::$name(ctx))
                    },
                },
            )*
        ]
    };
}
