package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tributary-cdc/tributary/internal/fault"
)

// This file is the one place the package classifies failures for the
// pipeline (internal/fault): transient unless marked permanent.

// classify marks err permanent unless it already is, or reconnecting may
// cure it (see retryable).
func classify(err error) error {
	if err == nil || fault.IsPermanent(err) || retryable(err) {
		return err
	}
	return fault.Permanent(err)
}

// retryable reports whether err may go away by reconnecting: network errors,
// server shutdown or start-up, a slot still held by a previous connection.
// Errors of the server not listed here are permanent.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "57P"):
			return true
		case pe.Code == "55006", pe.Code == "55000" && strings.Contains(pe.Message, "active"): // slot in use
			return true
		case pe.Code == "40001", pe.Code == "40P01", pe.Code == "XX000" && strings.Contains(pe.Message, "could not"):
			return true
		}
		return false
	}
	return true
}

// checkpointResetHint is how an operator repairs an unreadable position.
const checkpointResetHint = "reset it with `tributary checkpoint reset --pipeline NAME` (NAME: this pipeline's --pipeline.name): " +
	"the next start copies the table again under a fresh snapshot and streams from the slot's confirmed position, " +
	"and the rows already in ClickHouse collapse with their copies"

// resnapshotHint is how an operator recovers a slot that cannot continue.
func (s *Source) resnapshotHint() string {
	h := "recover with `tributary checkpoint reset --pipeline NAME --resnapshot` (NAME: this pipeline's --pipeline.name), " +
		fmt.Sprintf("which drops slot %q and the checkpoint; the next start creates the publication and the slot again and copies the table, ", s.cfg.Slot) +
		"and the rows already in ClickHouse collapse with their copies"
	if !s.cfg.CreatePublication {
		h += fmt.Sprintf(" (with --pg.create-publication=false, create publication %q first)", s.cfg.Publication)
	}
	return h
}

// sessionError describes a replication session's failure for an operator
// and classifies it: connecting says whether it failed before streaming
// began, resume is where the next session starts.
func (s *Source) sessionError(err error, connecting bool, resume pglogrepl.LSN) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "42704" && strings.Contains(pe.Message, "publication"):
			return fault.Permanent(fmt.Errorf("postgres replication cannot continue at LSN %s: publication %q does not exist (dropped?), and the slot cannot decode the changes committed while it was missing, even once it is created again; %s: %w",
				resume, s.cfg.Publication, s.resnapshotHint(), err))
		case pe.Code == "42704" && strings.Contains(pe.Message, "replication slot"):
			return fault.Permanent(fmt.Errorf("postgres replication cannot continue at LSN %s: replication slot %q no longer exists, so changes after that point may be lost; %s: %w",
				resume, s.cfg.Slot, s.resnapshotHint(), err))
		case pe.Code == "55000" && strings.Contains(pe.Message, "can no longer get changes"):
			return fault.Permanent(fmt.Errorf("postgres replication cannot continue at LSN %s: replication slot %q was invalidated (the WAL it needs was removed, see max_slot_wal_keep_size); %s: %w",
				resume, s.cfg.Slot, s.resnapshotHint(), err))
		case pe.Code == "55006", pe.Code == "55000" && strings.Contains(pe.Message, "active"):
			return fmt.Errorf("postgres replication slot %q is in use by another connection (a previous process's, still ending?) (resuming at LSN %s on the next attempt): %w",
				s.cfg.Slot, resume, err)
		}
	}
	what := "postgres replication connection lost"
	if connecting {
		what = "postgres replication connection failed"
	}
	if !retryable(err) {
		return fault.Permanent(fmt.Errorf("%s at LSN %s: %w", what, resume, err))
	}
	return fmt.Errorf("%s (resuming at LSN %s on the next attempt): %w", what, resume, err)
}
