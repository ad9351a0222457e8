package ecssim

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
)

type fakes struct {
	mu    sync.Mutex
	procs map[string]*FakeProcess
}

func (f *fakes) get(id string) *FakeProcess {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs[id]
}

func start(t *testing.T, opts Options) (*Server, *ecs.Client, *fakes) {
	t.Helper()
	fk := &fakes{procs: map[string]*FakeProcess{}}
	if opts.Launcher == nil {
		opts.Launcher = LauncherFunc(func(_ context.Context, spec LaunchSpec) (Process, error) {
			p := NewFakeProcess(spec)
			p.TermDelay = 10 * time.Millisecond
			fk.mu.Lock()
			fk.procs[spec.TaskID] = p
			fk.mu.Unlock()
			return p, nil
		})
	}
	s := New(opts)
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	stop := 2
	if _, err := s.RegisterTaskDefinition(TaskDefinition{Family: "azp-agent", CPU: "1024", Memory: "2048",
		RuntimePlatform:      &RuntimePlatform{CPUArchitecture: "X86_64", OperatingSystemFamily: "LINUX"},
		ContainerDefinitions: []ContainerDefinition{{Name: "agent", Image: "azp:1", StopTimeout: &stop, Environment: []KeyValuePair{{Name: "AZP_POOL", Value: "Default"}, {Name: "A", Value: "1"}}}}}); err != nil {
		t.Fatal(err)
	}
	return s, s.Client(func(o *ecs.Options) { o.RetryMaxAttempts = 1 }), fk
}

func runInput(n int32, token string) *ecs.RunTaskInput {
	return &ecs.RunTaskInput{Cluster: aws.String("azp-agents"), TaskDefinition: aws.String("azp-agent"), Count: aws.Int32(n),
		StartedBy: aws.String("azp-scale"), ClientToken: aws.String(token),
		Tags:                     []types.Tag{{Key: aws.String("azp-entrypoint:scaler"), Value: aws.String("Default/azp-agent")}},
		CapacityProviderStrategy: []types.CapacityProviderStrategyItem{{CapacityProvider: aws.String("FARGATE_SPOT"), Weight: 3}, {CapacityProvider: aws.String("FARGATE"), Weight: 1, Base: 1}},
		NetworkConfiguration:     &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{Subnets: []string{"subnet-1"}, AssignPublicIp: types.AssignPublicIpDisabled}},
		Overrides: &types.TaskOverride{ContainerOverrides: []types.ContainerOverride{{Name: aws.String("agent"),
			Environment: []types.KeyValuePair{{Name: aws.String("A"), Value: aws.String("2")}, {Name: aws.String("AZP_ONCE"), Value: aws.String("true")}}}}}}
}

func waitStatus(t *testing.T, s *Server, id, status string) TaskView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := s.WaitTasks(ctx, func(ts []TaskView) bool {
		for _, x := range ts {
			if x.ID == id && x.LastStatus == status {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("task %s never %s: %v (%+v)", id, status, err, v)
	}
	for _, x := range v {
		if x.ID == id {
			return x
		}
	}
	return TaskView{}
}

func TestRunTaskLifecycleThroughTheRealClient(t *testing.T) {
	s, c, fk := start(t, Options{Delays: Delays{Provisioning: 20 * time.Millisecond, Pending: 20 * time.Millisecond, Deprovisioning: 20 * time.Millisecond}})
	ctx := context.Background()
	out, err := c.RunTask(ctx, runInput(4, "tok-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tasks) != 4 || len(out.Failures) != 0 {
		t.Fatalf("tasks %d failures %d", len(out.Tasks), len(out.Failures))
	}
	tk := out.Tasks[0]
	if aws.ToString(tk.LastStatus) != StatusProvisioning || aws.ToString(tk.DesiredStatus) != StatusRunning || aws.ToString(tk.StartedBy) != "azp-scale" || tk.CreatedAt == nil {
		t.Fatalf("first answer: %+v", tk)
	}
	// base 1 on FARGATE, then weights 3:1.
	provs := map[string]int{}
	for _, x := range out.Tasks {
		provs[aws.ToString(x.CapacityProviderName)]++
	}
	if provs["FARGATE"] < 1 || provs["FARGATE_SPOT"] < 2 {
		t.Fatalf("capacity providers %v", provs)
	}
	// The same client token again: the same answer, nothing new.
	again, err := c.RunTask(ctx, runInput(4, "tok-1"))
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(again.Tasks[0].TaskArn) != aws.ToString(tk.TaskArn) || len(s.Tasks()) != 4 {
		t.Fatalf("client token not idempotent: %d tasks", len(s.Tasks()))
	}
	id := tk.TaskArn
	tid := (*id)[strings.LastIndex(*id, "/")+1:]
	v := waitStatus(t, s, tid, StatusRunning)
	if v.Env["A"] != "2" || v.Env["AZP_POOL"] != "Default" || v.Env["AZP_ONCE"] != "true" {
		t.Fatalf("environment: %v", v.Env)
	}
	if got := fk.get(tid).Spec.Env["A"]; got != "2" {
		t.Fatalf("container saw A=%q", got)
	}
	d, err := c.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String("azp-agents"), Tasks: []string{*id, "nope"}, Include: []types.TaskField{types.TaskFieldTags}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Tasks) != 1 || len(d.Failures) != 1 || aws.ToString(d.Failures[0].Reason) != "MISSING" || len(d.Tasks[0].Tags) != 1 || d.Tasks[0].StartedAt == nil {
		t.Fatalf("describe: %+v", d)
	}
	// StopTask: SIGTERM, the fake exits, STOPPED with UserInitiated.
	if _, err := c.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String("azp-agents"), Task: id, Reason: aws.String("scale in")}); err != nil {
		t.Fatal(err)
	}
	v = waitStatus(t, s, tid, StatusStopped)
	if v.StopCode != "UserInitiated" || v.StoppedReason != "scale in" || v.ExitCode == nil || *v.ExitCode != 0 {
		t.Fatalf("stopped: %+v", v)
	}
	// A container that exits by itself: EssentialContainerExited.
	other := aws.ToString(out.Tasks[1].TaskArn)
	oid := other[strings.LastIndex(other, "/")+1:]
	waitStatus(t, s, oid, StatusRunning)
	fk.get(oid).Exit(3)
	v = waitStatus(t, s, oid, StatusStopped)
	if v.StopCode != "EssentialContainerExited" || *v.ExitCode != 3 {
		t.Fatalf("exited: %+v", v)
	}
	// ListTasks: RUNNING by default, STOPPED on request; startedBy alone.
	l, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("azp-agents"), StartedBy: aws.String("azp-scale")})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.TaskArns) != 2 {
		t.Fatalf("running list %v", l.TaskArns)
	}
	l, err = c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("azp-agents"), Family: aws.String("azp-agent"), DesiredStatus: types.DesiredStatusStopped})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.TaskArns) != 2 {
		t.Fatalf("stopped list %v", l.TaskArns)
	}
	_, err = c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("azp-agents"), StartedBy: aws.String("azp-scale"), DesiredStatus: types.DesiredStatusStopped})
	var ip *types.InvalidParameterException
	if !errors.As(err, &ip) {
		t.Fatalf("startedBy with another filter: %v", err)
	}
	if s.MaxActive("azp-scale") != 4 {
		t.Fatalf("max active %d", s.MaxActive("azp-scale"))
	}
}

func TestStopTimeoutEndsWithSIGKILL(t *testing.T) {
	fk := &fakes{procs: map[string]*FakeProcess{}}
	s, c, _ := start(t, Options{Launcher: LauncherFunc(func(_ context.Context, spec LaunchSpec) (Process, error) {
		p := NewFakeProcess(spec)
		p.IgnoreTerm = true
		fk.mu.Lock()
		fk.procs[spec.TaskID] = p
		fk.mu.Unlock()
		return p, nil
	})})
	out, err := c.RunTask(context.Background(), runInput(1, ""))
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(out.Tasks[0].TaskArn)
	id := arn[strings.LastIndex(arn, "/")+1:]
	waitStatus(t, s, id, StatusRunning)
	start := time.Now()
	if _, err := c.StopTask(context.Background(), &ecs.StopTaskInput{Cluster: aws.String("azp-agents"), Task: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	v := waitStatus(t, s, id, StatusStopped)
	if *v.ExitCode != 137 || fk.get(id).Terms != 1 || time.Since(start) < 2*time.Second {
		t.Fatalf("stop: exit %d, %d SIGTERMs after %s (stopTimeout 2s)", *v.ExitCode, fk.get(id).Terms, time.Since(start))
	}
}

func TestFaultsAndErrors(t *testing.T) {
	s, c, _ := start(t, Options{})
	ctx := context.Background()
	s.FailCapacity(2)
	out, err := c.RunTask(ctx, runInput(3, ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Tasks) != 1 || len(out.Failures) != 2 || aws.ToString(out.Failures[0].Reason) != CapacityReason {
		t.Fatalf("capacity: %d tasks, failures %+v", len(out.Tasks), out.Failures)
	}
	s.Throttle(1)
	_, err = c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("azp-agents")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ThrottlingException" {
		t.Fatalf("throttle: %v", err)
	}
	_, err = c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String("nope"), TaskDefinition: aws.String("azp-agent")})
	var cnf *types.ClusterNotFoundException
	if !errors.As(err, &cnf) {
		t.Fatalf("unknown cluster: %v", err)
	}
	in := runInput(11, "")
	if _, err := c.RunTask(ctx, in); !errors.As(err, new(*types.InvalidParameterException)) {
		t.Fatalf("count 11: %v", err)
	}
	in = runInput(1, "")
	in.NetworkConfiguration = nil
	if _, err := c.RunTask(ctx, in); err == nil || !strings.Contains(err.Error(), "Network Configuration") {
		t.Fatalf("no network configuration: %v", err)
	}
	in = runInput(1, "")
	in.Overrides.ContainerOverrides[0].Name = aws.String("other")
	if _, err := c.RunTask(ctx, in); err == nil || !strings.Contains(err.Error(), "not a container") {
		t.Fatalf("bad override: %v", err)
	}
	_, err = c.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("missing")})
	if !errors.As(err, new(*types.ClientException)) {
		t.Fatalf("unknown task definition: %v", err)
	}
	td, err := c.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("azp-agent:1")})
	if err != nil || aws.ToString(td.TaskDefinition.ContainerDefinitions[0].Name) != "agent" || td.TaskDefinition.RuntimePlatform.CpuArchitecture != types.CPUArchitectureX8664 {
		t.Fatalf("describe task definition: %v %+v", err, td)
	}
	cl, err := c.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{"azp-agents", "gone"}})
	if err != nil || len(cl.Clusters) != 1 || len(cl.Failures) != 1 || aws.ToString(cl.Clusters[0].Status) != "ACTIVE" {
		t.Fatalf("describe clusters: %v %+v", err, cl)
	}
	// A wrong secret key is refused by the signature check.
	bad := ecs.NewFromConfig(aws.Config{Region: s.Region(), Credentials: credentials.NewStaticCredentialsProvider(DefaultAccessKeyID, "wrong", "")},
		func(o *ecs.Options) { o.BaseEndpoint = aws.String(s.URL()); o.RetryMaxAttempts = 1 })
	_, err = bad.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("azp-agents")})
	if !errors.As(err, &ae) || ae.ErrorCode() != "SignatureDoesNotMatch" {
		t.Fatalf("bad signature: %v", err)
	}
	unknown := ecs.NewFromConfig(aws.Config{Region: s.Region(), Credentials: credentials.NewStaticCredentialsProvider("AKIAUNKNOWN", "x", "")},
		func(o *ecs.Options) { o.BaseEndpoint = aws.String(s.URL()); o.RetryMaxAttempts = 1 })
	_, err = unknown.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String("azp-agents")})
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnrecognizedClientException" {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestBootFailureEnvAndPaging(t *testing.T) {
	s, c, fk := start(t, Options{})
	s.FailBoot(1, map[string]string{"AZP_POOL": "NoSuchPool"})
	out, err := c.RunTask(context.Background(), runInput(2, ""))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, tk := range out.Tasks {
		a := aws.ToString(tk.TaskArn)
		ids = append(ids, a[strings.LastIndex(a, "/")+1:])
	}
	waitStatus(t, s, ids[0], StatusRunning)
	waitStatus(t, s, ids[1], StatusRunning)
	if fk.get(ids[0]).Spec.Env["AZP_POOL"] != "NoSuchPool" || fk.get(ids[1]).Spec.Env["AZP_POOL"] != "Default" {
		t.Fatal("boot failure env not applied to exactly the first task")
	}
	p := ecs.NewListTasksPaginator(c, &ecs.ListTasksInput{Cluster: aws.String("azp-agents"), MaxResults: aws.Int32(1)})
	n := 0
	for p.HasMorePages() {
		pg, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += len(pg.TaskArns)
	}
	if n != 2 {
		t.Fatalf("paged %d tasks", n)
	}
}
