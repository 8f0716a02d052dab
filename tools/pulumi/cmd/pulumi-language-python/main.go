// pulumi-language-python for the lab's engine: the language host the pulumi CLI starts for `runtime: python`.
//
// Pulumi's own language host lives in a module of its own (sdk/python/cmd/pulumi-language-python) that the Go
// module proxy these machines reach does not serve (README: Build the lab), so `make tools` builds this one
// instead. It does what the engine needs to run a Python program: on Run it starts the SDK's own
// pulumi-language-python-exec script (shipped in the sdk module, installed beside this binary) with the
// virtualenv's Python named in Pulumi.yaml, hands it the monitor/engine addresses, project, stack, dry-run
// and parallelism as flags and the stack config and its secret keys as PULUMI_CONFIG /
// PULUMI_CONFIG_SECRET_KEYS, exactly the interface that script reads. Plugin discovery from installed
// packages (GetRequiredPackages) answers "none": plugins load when a resource needs them, and automatic
// plugin downloads are off here anyway. Everything else (pulumi new/about/convert/packages) is unimplemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The exec script exits with this code after it showed the user an actionable error (no stack trace wanted).
const bailExitCode = 32

type languageHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engine   string // the engine's gRPC address (the last positional argument)
	execPath string // pulumi-language-python-exec
	tracing  string
}

func main() {
	// The engine may pass these before the engine address; they are accepted and (but tracing) ignored.
	flag.Bool("logtostderr", false, "log to stderr")
	flag.Int("v", 0, "log verbosity")
	tracing := flag.String("tracing", "", "Zipkin-compatible tracing endpoint")
	flag.Parse()

	host := &languageHost{tracing: *tracing}
	if flag.NArg() > 0 {
		host.engine = flag.Arg(flag.NArg() - 1)
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	host.execPath = filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
	if _, err := os.Stat(host.execPath); err != nil {
		fail(fmt.Errorf("%s is missing beside the language host; run `make tools`", host.execPath))
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(400 * 1024 * 1024))
	pulumirpc.RegisterLanguageRuntimeServer(srv, host)
	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", lis.Addr().(*net.TCPAddr).Port)
	if err := srv.Serve(lis); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}

func (h *languageHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

func (h *languageHost) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *languageHost) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// python returns the interpreter to run the program with: the virtualenv's (runtime option `virtualenv`,
// relative to the project root), else $PULUMI_PYTHON_CMD, else python3 on PATH.
func python(info *pulumirpc.ProgramInfo) (string, []string, error) {
	env := os.Environ()
	opts := map[string]any{}
	if info != nil && info.GetOptions() != nil {
		opts = info.GetOptions().AsMap()
	}
	if tc, ok := opts["toolchain"].(string); ok && tc != "" && tc != "pip" {
		return "", nil, fmt.Errorf("runtime option toolchain: %q is not supported by this language host "+
			"(only pip with a virtualenv); see README: Build the lab", tc)
	}
	if venv, ok := opts["virtualenv"].(string); ok && venv != "" {
		if !filepath.IsAbs(venv) {
			venv = filepath.Join(info.GetRootDirectory(), venv)
		}
		bin := filepath.Join(venv, "bin", "python")
		if _, err := os.Stat(bin); err != nil {
			return "", nil, fmt.Errorf("the virtualenv %s named in Pulumi.yaml has no bin/python; run `make venv`", venv)
		}
		env = append(env, "VIRTUAL_ENV="+venv, "PATH="+filepath.Join(venv, "bin")+":"+os.Getenv("PATH"))
		return bin, env, nil
	}
	if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
		return cmd, env, nil
	}
	bin, err := exec.LookPath("python3")
	return bin, env, err
}

func (h *languageHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	bin, env, err := python(req.GetInfo())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	config, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, err
	}
	secretKeys, err := json.Marshal(req.GetConfigSecretKeys())
	if err != nil {
		return nil, err
	}
	env = append(env, "PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys))

	args := []string{"-u", h.execPath}
	flag := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name, value)
		}
	}
	flag("monitor", req.GetMonitorAddress())
	flag("engine", h.engine)
	flag("project", req.GetProject())
	flag("stack", req.GetStack())
	flag("pwd", req.GetPwd())
	flag("dry_run", strconv.FormatBool(req.GetDryRun()))
	flag("parallel", strconv.Itoa(int(req.GetParallel())))
	flag("tracing", h.tracing)
	flag("organization", req.GetOrganization())
	program := req.GetProgram() //nolint:staticcheck // the engine still fills it (the entry point)
	if info := req.GetInfo(); info != nil {
		flag("root_directory", info.GetRootDirectory())
		if info.GetProgramDirectory() != "" {
			program = filepath.Join(info.GetProgramDirectory(), info.GetEntryPoint())
		}
	}
	if program == "" {
		program = "."
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			if status, ok := exit.Sys().(syscall.WaitStatus); ok && status.ExitStatus() == bailExitCode {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d",
				exit.ExitCode())}, nil
		}
		return &pulumirpc.RunResponse{Error: "could not run " + strings.Join(append([]string{bin}, args...), " ") +
			": " + err.Error()}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}
