package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Options configure the identity service.
type Options struct {
	// AdminPassword, when set and no user named admin exists yet, creates
	// user admin in project admin with role admin (Keystone's bootstrap).
	AdminPassword string
	// TokenTTL is how long a token lives (default one hour, Keystone's).
	TokenTTL time.Duration
	// BcryptCost is the password hashing cost (default 12, Keystone's).
	// Tests lower it.
	BcryptCost int
	Log        *slog.Logger
}

// Service is the built-in Keystone subset: users, projects, roles and
// assignments in the NSDB, password authentication, signed tokens.
type Service struct {
	store *nsdb.Store
	key   []byte
	ttl   time.Duration
	cost  int
	cache *TokenCache
	log   *slog.Logger
	now   func() time.Time
}

// The admin user and project bootstrap creates.
const (
	AdminUser    = "admin"
	AdminProject = "admin"
	// DefaultDomainID and DefaultDomainName name the one domain.
	DefaultDomainID   = "default"
	DefaultDomainName = "Default"
)

// ErrNoAdmin is returned by New when no user exists and no admin password
// was given: nobody could ever authenticate.
var ErrNoAdmin = errors.New("the identity service has no users: give --admin-password (or NAGARE_ADMIN_PASSWORD) on first start to create user admin")

// New opens the identity service over the NSDB, creating on first start the
// token signing key, the roles admin, member and reader and, with
// opts.AdminPassword, the admin user.
func New(ctx context.Context, store *nsdb.Store, opts Options) (*Service, error) {
	if opts.TokenTTL == 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = 12
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	s := &Service{store: store, ttl: opts.TokenTTL, cost: opts.BcryptCost, log: opts.Log,
		cache: NewTokenCache(30*time.Second, 100000), now: time.Now}
	var hash string
	if opts.AdminPassword != "" {
		var err error
		if hash, err = hashPassword(opts.AdminPassword, s.cost); err != nil {
			return nil, err
		}
	}
	var created, anyUser bool
	_, err := store.Update(ctx, func(tx *nsdb.Tx) error {
		created, anyUser = false, false
		o, err := tx.Get(SecretKind, secretID)
		switch {
		case err == nil:
			s.key = o.(*Secret).Key
		case errors.Is(err, model.ErrNotFound):
			s.key = newKey()
			if _, err := tx.Create(&Secret{Meta: model.Meta{ID: secretID}, Key: s.key}); err != nil {
				return err
			}
		default:
			return err
		}
		for _, name := range []string{RoleAdmin, RoleMember, RoleReader} {
			if _, err := tx.Get(RoleKind, RoleID(name)); errors.Is(err, model.ErrNotFound) {
				if _, err := tx.Create(&Role{Meta: model.Meta{ID: RoleID(name)}, Name: name}); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
		}
		users, err := tx.List(UserKind, "name", AdminUser)
		if err != nil {
			return err
		}
		if len(users) > 0 || hash == "" {
			all, err := tx.List(UserKind, "", "")
			anyUser = len(all) > 0
			return err
		}
		proj, err := ensureProject(tx, AdminProject)
		if err != nil {
			return err
		}
		u, err := tx.Create(&User{Name: AdminUser, PasswordHash: hash, Enabled: true, DefaultProjectID: proj})
		if err != nil {
			return err
		}
		uid := u.GetMeta().ID
		_, err = tx.Create(&Assignment{Meta: model.Meta{ID: assignmentID(uid, proj, RoleID(RoleAdmin))}, UserID: uid, ProjectID: proj, RoleID: RoleID(RoleAdmin)})
		created, anyUser = true, true
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("identity: bootstrap: %w", err)
	}
	switch {
	case created:
		s.log.Info("identity: created user admin in project admin with role admin")
	case opts.AdminPassword != "":
		s.log.Info("identity: user admin exists already; --admin-password only applies on first start (change passwords through the identity API)")
	case !anyUser:
		return nil, ErrNoAdmin
	}
	return s, nil
}

func ensureProject(tx *nsdb.Tx, name string) (string, error) {
	ps, err := tx.List(ProjectKind, "name", name)
	if err != nil {
		return "", err
	}
	if len(ps) > 0 {
		return ps[0].GetMeta().ID, nil
	}
	p, err := tx.Create(&Project{Name: name, Enabled: true})
	if err != nil {
		return "", err
	}
	return p.GetMeta().ID, nil
}

// Login checks a password and issues a token scoped to projectID ("" for
// an unscoped token, or the user's default project when it has one). It
// returns ErrInvalidToken-like errors as *AuthError so the API can answer
// 401 without saying which part was wrong.
func (s *Service) Login(ctx context.Context, userID, userName, password, projectID, projectName string, scoped bool) (string, *Context, error) {
	var u *User
	if userID != "" {
		if o, err := s.store.Get(ctx, UserKind, storeID(userID)); err == nil {
			u = o.(*User)
		} else if !errors.Is(err, model.ErrNotFound) {
			return "", nil, err
		}
	} else {
		us, _, err := s.store.List(ctx, UserKind, "name", userName)
		if err != nil {
			return "", nil, err
		}
		if len(us) == 1 {
			u = us[0].(*User)
		}
	}
	hash := ""
	if u != nil {
		hash = u.PasswordHash
	}
	if !checkPassword(hash, password, s.cost) || !u.Enabled {
		return "", nil, ErrInvalidToken
	}
	pid, err := s.scope(ctx, projectID, projectName)
	if err != nil {
		return "", nil, err
	}
	if pid == "" && !scoped {
		pid = u.DefaultProjectID
	}
	return s.issue(ctx, u.ID, pid, []string{"password"}, s.now().Add(s.ttl))
}

// Rescope issues a token for the user of a valid token, scoped to another
// project (Keystone's token method).
func (s *Service) Rescope(ctx context.Context, tok, projectID, projectName string) (string, *Context, error) {
	if _, err := s.Validate(ctx, tok); err != nil {
		return "", nil, err
	}
	old, err := verify(s.key, tok, s.now())
	if err != nil {
		return "", nil, err
	}
	pid, err := s.scope(ctx, projectID, projectName)
	if err != nil {
		return "", nil, err
	}
	return s.issue(ctx, old.UserID, pid, []string{"token"}, old.expires())
}

// scope resolves the project a token request scopes to, by id or by name
// ("" for none); a project that is not there is an invalid login.
func (s *Service) scope(ctx context.Context, projectID, projectName string) (string, error) {
	switch {
	case projectID != "":
		pid := storeID(projectID)
		if pid == "" {
			return "", ErrInvalidToken
		}
		return pid, nil
	case projectName != "":
		ps, _, err := s.store.List(ctx, ProjectKind, "name", projectName)
		if err != nil {
			return "", err
		}
		if len(ps) != 1 {
			return "", ErrInvalidToken
		}
		return ps[0].GetMeta().ID, nil
	}
	return "", nil
}

// issue signs a token and resolves its context; a project scope needs a role.
func (s *Service) issue(ctx context.Context, userID, pid string, methods []string, expires time.Time) (string, *Context, error) {
	now := s.now()
	c := &claims{UserID: userID, ProjectID: pid, Methods: methods, IssuedAt: now.UnixMilli(),
		ExpiresAt: expires.UnixMilli(), AuditID: newAuditID()}
	tok := sign(s.key, c)
	cx, err := s.resolve(ctx, c, tok)
	if err != nil {
		return "", nil, err
	}
	if pid != "" && len(cx.Roles) == 0 {
		// Keystone refuses a project scope the user holds no role on.
		return "", nil, ErrInvalidToken
	}
	s.cache.Put(tok, cx, now)
	return tok, cx, nil
}

// Validate implements Validator.
func (s *Service) Validate(ctx context.Context, tok string) (*Context, error) {
	now := s.now()
	if c := s.cache.Get(tok, now); c != nil {
		return c, nil
	}
	cl, err := verify(s.key, tok, now)
	if err != nil {
		return nil, err
	}
	if _, err := s.store.Get(ctx, RevocationKind, DerivedID("revocation", cl.AuditID)); err == nil {
		return nil, ErrInvalidToken
	} else if !errors.Is(err, model.ErrNotFound) {
		return nil, err
	}
	c, err := s.resolve(ctx, cl, tok)
	if err != nil {
		return nil, err
	}
	s.cache.Put(tok, c, now)
	return c, nil
}

// resolve reads the user, the project and the user's roles on it.
func (s *Service) resolve(ctx context.Context, cl *claims, tok string) (*Context, error) {
	o, err := s.store.Get(ctx, UserKind, cl.UserID)
	if errors.Is(err, model.ErrNotFound) {
		return nil, ErrInvalidToken
	}
	if err != nil {
		return nil, err
	}
	u := o.(*User)
	if !u.Enabled {
		return nil, ErrInvalidToken
	}
	c := &Context{UserID: APIID(u.ID), UserName: u.Name, Token: tok, ExpiresAt: cl.expires(),
		Methods: cl.Methods, IssuedAt: cl.issued(), AuditID: cl.AuditID}
	if cl.ProjectID == "" {
		return c, nil
	}
	o, err = s.store.Get(ctx, ProjectKind, cl.ProjectID)
	if errors.Is(err, model.ErrNotFound) {
		return nil, ErrInvalidToken
	}
	if err != nil {
		return nil, err
	}
	p := o.(*Project)
	if !p.Enabled {
		return nil, ErrInvalidToken
	}
	c.ProjectID, c.ProjectName = APIID(p.ID), p.Name
	roles, err := s.rolesOf(ctx, u.ID, p.ID)
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		c.Roles = append(c.Roles, r.Name)
	}
	return c, nil
}

func (s *Service) rolesOf(ctx context.Context, userID, projectID string) ([]*Role, error) {
	as, _, err := s.store.List(ctx, AssignmentKind, "user_id", userID)
	if err != nil {
		return nil, err
	}
	var out []*Role
	for _, o := range as {
		a := o.(*Assignment)
		if a.ProjectID != projectID {
			continue
		}
		r, err := s.store.Get(ctx, RoleKind, a.RoleID)
		if errors.Is(err, model.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r.(*Role))
	}
	return out, nil
}

// CheckToken validates a token for a caller: admins may check any token,
// users their own.
func (s *Service) CheckToken(ctx context.Context, c *Context, tok string) (*Context, error) {
	sc, err := s.Validate(ctx, tok)
	if err != nil {
		return nil, err
	}
	if !c.IsAdmin() && sc.UserID != c.UserID {
		return nil, forbidden()
	}
	return sc, nil
}

// RevokeToken revokes a token for a caller, under CheckToken's policy.
func (s *Service) RevokeToken(ctx context.Context, c *Context, tok string) error {
	if _, err := s.CheckToken(ctx, c, tok); err != nil {
		return err
	}
	return s.Revoke(ctx, tok)
}

// Revoke invalidates a token before it expires.
func (s *Service) Revoke(ctx context.Context, tok string) error {
	cl, err := verify(s.key, tok, s.now())
	if err != nil {
		return err
	}
	id := DerivedID("revocation", cl.AuditID)
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		if _, err := tx.Get(RevocationKind, id); err == nil {
			return nil
		}
		_, err := tx.Create(&Revocation{Meta: model.Meta{ID: id}, ExpiresAt: cl.ExpiresAt})
		return err
	})
	s.cache.Drop(tok)
	return err
}

// PurgeRevocations deletes revocation records of tokens that have expired
// anyway; the server runs it now and then.
func (s *Service) PurgeRevocations(ctx context.Context) error {
	rs, _, err := s.store.List(ctx, RevocationKind, "", "")
	if err != nil {
		return err
	}
	now := s.now().UnixMilli()
	for _, o := range rs {
		if o.(*Revocation).ExpiresAt < now {
			if err := s.store.Remove(ctx, RevocationKind, o.GetMeta().ID, 0); err != nil && !errors.Is(err, model.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// validPassword applies the only rule Keystone applies by default.
func validPassword(p string) error {
	if strings.TrimSpace(p) == "" {
		return errors.New("the password must not be empty")
	}
	if len(p) > 4096 {
		return errors.New("the password is longer than 4096 bytes")
	}
	return nil
}
