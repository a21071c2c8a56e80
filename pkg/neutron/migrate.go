package neutron

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Before port security was native (model.Port.Sources), a filtered port's
// translation held three chains of its own, ten-odd rules jumping to
// common chains and its groups' chains, and one address object per
// address and group: ~70 etcd writes per port create, and a full topology
// rebuild in every agent for each. Those ports keep working as they are —
// their chains are ordinary chains — and MigratePortFilters translates
// them again.

// Ids of the old translation's chains.
var (
	legacyCommonInChainID  = DerivedID("common", "port-in")
	legacyCommonOutChainID = DerivedID("common", "port-out")
)

func portEgChainID(portID string) string  { return DerivedID("port-eg", portID) }
func portInChainID(portID string) string  { return DerivedID("port-in", portID) }
func portOutChainID(portID string) string { return DerivedID("port-out", portID) }

// MigratePortFilters translates again every port whose filter is still in
// the old shape (chains of its own), one transaction per port, then
// deletes the old common chains once no chain jumps to them. nagare-server
// runs it at start, in the background: until a port is migrated its old
// chains filter it exactly as the new form does (TestLegacyPortFilters).
// It returns how many ports it migrated.
func (s *Service) MigratePortFilters(ctx context.Context) (int, error) {
	chains, _, err := s.store.List(ctx, model.ChainKind, "", "")
	if err != nil {
		return 0, fmt.Errorf("neutron: list chains to migrate port filters: %w", err)
	}
	// The old chains are named "port <id> in": the name gives the port,
	// the derived id proves the chain is that port's.
	var ids []string
	common := false
	for _, o := range chains {
		c := o.(*model.Chain)
		id, ok := strings.CutPrefix(c.Name, "port ")
		if id, ok = strings.CutSuffix(id, " in"); ok && model.IsUUID(id) && c.ID == portInChainID(id) {
			ids = append(ids, id)
		}
		common = common || c.ID == legacyCommonInChainID
	}
	admin := &identity.Context{Roles: []string{identity.RoleAdmin}}
	done := 0
	for _, id := range ids {
		migrated := false
		_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
			migrated = false
			o, err := tx.Get(PortKind, id)
			if errors.Is(err, model.ErrNotFound) {
				return nil // deleted meanwhile, with its chains
			}
			if err != nil {
				return err
			}
			migrated = true
			return s.writePort(tx, admin, o.(*Port), PortRequest{}, false)
		})
		if err != nil {
			return done, fmt.Errorf("neutron: migrate the filter of port %s: %w", id, err)
		}
		if migrated {
			done++
		}
	}
	if common {
		if err := s.dropLegacyCommonChains(ctx); err != nil {
			return done, err
		}
	}
	return done, nil
}

// dropLegacyCommonChains deletes the old common chains and their rules,
// unless a rule still jumps to them (a port an older server translated
// meanwhile: the next start migrates it).
func (s *Service) dropLegacyCommonChains(ctx context.Context) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		for _, id := range []string{legacyCommonInChainID, legacyCommonOutChainID} {
			users, err := tx.List(model.RuleKind, "jump_chain_id", id)
			if err != nil {
				return err
			}
			if len(users) > 0 {
				return nil
			}
		}
		for _, id := range []string{legacyCommonInChainID, legacyCommonOutChainID} {
			if err := tx.Delete(model.ChainKind, id); err != nil && !errors.Is(err, model.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("neutron: delete the old common chains of port filters: %w", err)
	}
	return nil
}
