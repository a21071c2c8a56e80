package neutron

import (
	"context"
	"math/big"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Network IP availability (network-ip-availability): per network and
// subnet, the addresses of the allocation pools and those in use.

// IPAvailability is one network's.
type IPAvailability struct {
	Network     *Network
	Total, Used *big.Int
	Subnets     []SubnetAvailability
}

// SubnetAvailability is one subnet's.
type SubnetAvailability struct {
	Subnet      *Subnet
	Total, Used *big.Int
}

// IPAvailabilities are the availabilities of every network, or of one
// (id), for admins (Neutron's get_network_ip_availability is admin only).
func (s *Service) IPAvailabilities(ctx context.Context, c *identity.Context, id string) ([]*IPAvailability, error) {
	if !c.IsAdmin() {
		if id != "" {
			return nil, NewError(NotFound, "NetworkNotFound", "Network %s could not be found.", id)
		}
		return nil, PolicyNotAuthorized("get_network_ip_availability")
	}
	var out []*IPAvailability
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		var nets []*Network
		if id != "" {
			n, err := get[*Network](tx, c, id)
			if err != nil {
				return err
			}
			nets = []*Network{n}
		} else {
			var err error
			if nets, err = listOf[*Network](tx, "", ""); err != nil {
				return err
			}
		}
		for _, n := range nets {
			a := &IPAvailability{Network: n, Total: new(big.Int), Used: new(big.Int)}
			subs, err := listOf[*Subnet](tx, "network_id", n.ID)
			if err != nil {
				return err
			}
			for _, sub := range subs {
				sa := SubnetAvailability{Subnet: sub, Total: new(big.Int), Used: new(big.Int)}
				for _, p := range sub.AllocationPools {
					sa.Total.Add(sa.Total, p.size())
				}
				used, err := tx.List(IPAllocationKind, "subnet_id", sub.ID)
				if err != nil {
					return err
				}
				sa.Used.SetInt64(int64(len(used)))
				a.Total.Add(a.Total, sa.Total)
				a.Used.Add(a.Used, sa.Used)
				a.Subnets = append(a.Subnets, sa)
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}
