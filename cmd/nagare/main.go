// Command nagare is the operator CLI for Nagare, in midonet-cli's grammar:
//
//	nagare                                 interactive prompt (stdin a terminal)
//	nagare -e "list bridge" -e "…"         one-shot commands, run in order
//	nagare < script.txt                    commands line by line, stop at the first failure
//	nagare -o json -e "list router"        API objects as JSON, for scripts
//
// Exit status: 0 success, 1 a command failed, 2 startup error (bad flags,
// server unreachable).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/chzyer/readline"
	"github.com/google/shlex"
	"github.com/spf13/cobra"

	"github.com/nagare/nagare/pkg/cli"
)

const defaultAPI = "http://127.0.0.1:9696"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// startupError marks failures before any command ran (exit 2).
type startupError struct{ error }

func run(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	var (
		api                                    string
		output                                 string
		osUser, osPassword, osProject, osToken string
		noTokenCache                           bool
		caCert                                 string
		execs                                  []string
		code                                   int
	)
	root := &cobra.Command{
		Use:   "nagare [-e COMMAND]… [WORDS…]",
		Short: "Nagare operator CLI (midonet-cli grammar)",
		Long: "Nagare operator CLI (midonet-cli grammar).\n\n" + cli.Help +
			"\nWith -e, each COMMAND runs in order; WORDS after the flags are appended to the last -e\n" +
			"(midonet-cli's `-e list bridge`) or form a command of their own. Without commands, a\n" +
			"terminal gets the nagare> prompt and anything else is read as a script.",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return startupError{fmt.Errorf("-o %q: want text or json", output)}
			}
			client, err := cli.NewClient(api)
			if err != nil {
				return startupError{err}
			}
			if caCert != "" {
				if err := client.SetCACert(caCert); err != nil {
					return startupError{err}
				}
			}
			cache := cli.DefaultTokenCache()
			if noTokenCache {
				cache = cli.TokenCache{}
			}
			cr := cli.Credentials{Token: osToken, User: osUser, Password: osPassword, Project: osProject}
			if err := client.Connect(ctx, cr, cache); err != nil {
				var ae *cli.APIError
				var te *cli.TransportError
				switch {
				case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
					return startupError{fmt.Errorf("the Nagare API at %s requires authentication: set OS_USERNAME and OS_PASSWORD (and OS_PROJECT_NAME), or OS_TOKEN", api)}
				case errors.As(err, &ae) || errors.As(err, &te):
					return startupError{fmt.Errorf("cannot reach the Nagare API at %s: %v\n(start nagare-server, or point --api or NAGARE_API at it)", api, err)}
				}
				return startupError{err} // a refused login, a token cache that cannot be written
			}
			e := &cli.Engine{API: client, Out: stdout, JSON: output == "json"}
			code = runCommands(ctx, e, execs, args, stdin, stderr)
			return nil
		},
	}
	api = os.Getenv("NAGARE_API")
	if api == "" {
		api = defaultAPI
	}
	root.Flags().StringVar(&api, "api", api, "URL of nagare-server's API (env NAGARE_API)")
	osProject = os.Getenv("OS_PROJECT_NAME")
	if osProject == "" {
		osProject = "admin"
	}
	root.Flags().StringVar(&osUser, "os-username", os.Getenv("OS_USERNAME"), "user to log in as with the server's identity service (env OS_USERNAME)")
	root.Flags().StringVar(&osPassword, "os-password", os.Getenv("OS_PASSWORD"), "password (env OS_PASSWORD)")
	root.Flags().StringVar(&osProject, "os-project-name", osProject, "project to scope the token to (env OS_PROJECT_NAME)")
	root.Flags().StringVar(&osToken, "os-token", os.Getenv("OS_TOKEN"), "use this token instead of a password (env OS_TOKEN)")
	root.Flags().BoolVar(&noTokenCache, "no-token-cache", false, "log in with the password every time instead of reusing the token cached (0600) in ~/.cache/nagare/tokens")
	root.Flags().StringVar(&caCert, "os-cacert", os.Getenv("OS_CACERT"), "CA certificate to verify an https API with, e.g. the server's DATA-DIR/pki/ca.crt (env OS_CACERT)")
	root.Flags().StringArrayVarP(&execs, "execute", "e", nil, "run `COMMAND` and exit (repeatable; run in order)")
	root.Flags().StringVarP(&output, "output", "o", "text", "output format: text (object lines) or json (API objects)")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "nagare:", err)
		return 2
	}
	return code
}

// runCommands picks the mode: -e/positional commands, the prompt, or a script.
func runCommands(ctx context.Context, e *cli.Engine, execs, args []string, stdin *os.File, stderr io.Writer) int {
	var cmds [][]string
	for _, x := range execs {
		words, err := shlex.Split(x)
		if err != nil {
			fmt.Fprintf(stderr, "Syntax error at: %s\n  unbalanced quotes or a trailing backslash\n", x)
			return 1
		}
		cmds = append(cmds, words)
	}
	// Positional words were split by the shell already; keep them as words
	// so quoting survives.
	if len(args) > 0 {
		if len(cmds) > 0 {
			cmds[len(cmds)-1] = append(cmds[len(cmds)-1], args...)
		} else {
			cmds = append(cmds, args)
		}
	}
	if len(cmds) > 0 {
		for _, words := range cmds {
			if err := e.RunWords(ctx, words); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
		}
		return 0
	}
	if readline.IsTerminal(int(stdin.Fd())) {
		hist := ""
		if home, err := os.UserHomeDir(); err == nil {
			hist = filepath.Join(home, ".nagare_history")
		}
		if err := e.Interactive(ctx, hist); err != nil {
			fmt.Fprintln(stderr, "nagare:", err)
			return 2
		}
		return 0
	}
	if err := e.RunScript(ctx, stdin, stderr); err != nil {
		return 1
	}
	return 0
}
