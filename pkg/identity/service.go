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
	// LockoutFailureAttempts failed logins of a user from one address
	// lock them out for LockoutDuration (Keystone's options of the same
	// names; see Lockout). 0 is DefaultLockoutFailureAttempts and
	// DefaultLockoutDuration; a negative number turns lockout off.
	LockoutFailureAttempts int
	LockoutDuration        time.Duration
	Log                    *slog.Logger
}

// Service is the built-in Keystone subset: users, projects, roles and
// assignments in the NSDB, password authentication, signed tokens.
type Service struct {
	store   *nsdb.Store
	keys    keys
	lockout *Lockout
	ttl     time.Duration
	cost    int
	cache   *TokenCache
	log     *slog.Logger
	now     func() time.Time
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
	if opts.LockoutFailureAttempts == 0 {
		opts.LockoutFailureAttempts = DefaultLockoutFailureAttempts
	}
	if opts.LockoutDuration <= 0 {
		opts.LockoutDuration = DefaultLockoutDuration
	}
	s := &Service{store: store, ttl: opts.TokenTTL, cost: opts.BcryptCost, log: opts.Log,
		lockout: NewLockout(opts.LockoutFailureAttempts, opts.LockoutDuration),
		cache:   NewTokenCache(30*time.Second, 100000), now: time.Now}
	var hash string
	if opts.AdminPassword != "" {
		var err error
		if hash, err = hashPassword(opts.AdminPassword, s.cost); err != nil {
			return nil, err
		}
	}
	var created, anyUser bool
	var ring keyring
	_, err := store.Update(ctx, func(tx *nsdb.Tx) error {
		created, anyUser = false, false
		var err error
		if ring, err = s.loadKeys(tx); err != nil {
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
	s.keys.set(ring)
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

// PasswordLogin is a password authentication: who (by id or name), from
// where (the client's address, for the lockout), and the scope asked.
type PasswordLogin struct {
	Source           string
	UserID, UserName string
	Password         string
	// ProjectID or ProjectName scopes the token; with neither, Scoped
	// false scopes it to the user's default project, Scoped true leaves
	// it unscoped.
	ProjectID, ProjectName string
	Scoped                 bool
}

// Login checks a password and issues a token. A refused login is
// ErrInvalidToken whichever part was wrong (the API answers 401 without
// saying which); a user locked out from the source (Lockout) is refused
// before the password is checked.
func (s *Service) Login(ctx context.Context, l PasswordLogin) (string, *Context, error) {
	var u *User
	who := "name:" + l.UserName
	if l.UserID != "" {
		who = "id:" + l.UserID
		if o, err := s.store.Get(ctx, UserKind, storeID(l.UserID)); err == nil {
			u = o.(*User)
		} else if !errors.Is(err, model.ErrNotFound) {
			return "", nil, err
		}
	} else {
		us, _, err := s.store.List(ctx, UserKind, "name", l.UserName)
		if err != nil {
			return "", nil, err
		}
		if len(us) == 1 {
			u = us[0].(*User)
		}
	}
	hash := ""
	if u != nil {
		hash, who = u.PasswordHash, u.ID // by id or by name: one count
	}
	now := s.now()
	if wait := s.lockout.Locked(who, l.Source, now); wait > 0 {
		return "", nil, newError(Unauthorized, "Too many failed logins of this user from %s: the account is locked for this address for %s.", l.Source, wait.Round(time.Second))
	}
	if !checkPassword(hash, l.Password, s.cost) {
		if s.lockout.Failed(who, l.Source, now) {
			s.log.Warn("identity: login locked out after repeated failures", "user", l.UserName+l.UserID, "source", l.Source)
		}
		return "", nil, ErrInvalidToken
	}
	s.lockout.Succeeded(who, l.Source)
	if !u.Enabled {
		return "", nil, ErrInvalidToken
	}
	pid, err := s.scope(ctx, l.ProjectID, l.ProjectName)
	if err != nil {
		return "", nil, err
	}
	if pid == "" && !l.Scoped {
		pid = u.DefaultProjectID
	}
	return s.issue(ctx, u.ID, pid, []string{"password"}, now.Add(s.ttl))
}

// Rescope issues a token for the user of a valid token, scoped to another
// project (Keystone's token method).
func (s *Service) Rescope(ctx context.Context, tok, projectID, projectName string) (string, *Context, error) {
	if _, err := s.Validate(ctx, tok); err != nil {
		return "", nil, err
	}
	old, err := s.verify(ctx, tok, s.now())
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
	tok := sign(s.keys.get().primary, c)
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
	cl, err := s.verify(ctx, tok, now)
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
	cl, err := s.verify(ctx, tok, s.now())
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
