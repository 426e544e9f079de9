%% The BEAM side of rusm-bench's native scenarios, measured the same way: the same
%% sizes (rusm-bench's defaults), one warm-up run then 7 measured runs, the median
%% reported, and only the measured work inside the timed section (processes that
%% must exist first are started before the clock starts).
%%
%%   erlc -o /tmp crates/rusm-bench/beam/beam_anchor.erl
%%   erl -pa /tmp +S 2:2 +P 2000000 -noshell -eval 'beam_anchor:main(), halt().'
%%
%% `+S 2:2` gives BEAM two schedulers, as rusm-bench runs on two tokio workers.
%% Prints one line per scenario, then the same figures as one JSON document.
-module(beam_anchor).
-export([main/0]).

-define(RUNS, 7).

main() ->
    %% The driver collects up to 500,000 replies at once: kept off its heap, they are
    %% not copied by every garbage collection (the setting BEAM offers such receivers).
    process_flag(message_queue_data, off_heap),
    Figures = [
        measure("spawn-native", "spawns", fun spawn_native/1, 500000),
        measure("ping-pong", "round trips", fun ping_pong/1, 1000000),
        measure("ring", "hops", fun(N) -> ring(N, 1000) end, 1000),
        measure("fan-out", "messages", fun(N) -> fan_out(N, 20000) end, 100),
        idle_memory(100000)
    ],
    io:format("~s~n", [json(Figures)]).

%% Run `Work(N)` once to warm up, then ?RUNS times; each run returns
%% {Units, Microseconds}. The figure is the median rate.
measure(Name, Unit, Work, N) ->
    _ = Work(N),
    Rates = lists:sort([rate(Work(N)) || _ <- lists:seq(1, ?RUNS)]),
    Median = lists:nth((?RUNS + 1) div 2, Rates),
    io:format("~-14s n=~-8b ~12.1f ~s/s  [~.1f .. ~.1f]~n",
              [Name, N, Median, Unit, hd(Rates), lists:last(Rates)]),
    {Name, Unit, N, Median, hd(Rates), lists:last(Rates)}.

rate({Units, Micros}) -> Units * 1.0e6 / max(Micros, 1).

timed(Fun) ->
    T0 = erlang:monotonic_time(microsecond),
    Units = Fun(),
    {Units, erlang:monotonic_time(microsecond) - T0}.

%% N processes that each reply once and exit; every reply collected.
spawn_native(N) ->
    Me = self(),
    timed(fun() ->
        spawn_n(Me, N),
        collect(N),
        N
    end).

spawn_n(_, 0) -> ok;
spawn_n(Me, K) ->
    spawn(fun() -> Me ! done end),
    spawn_n(Me, K - 1).

collect(0) -> ok;
collect(K) -> receive done -> collect(K - 1) end.

%% N round trips between this process and a ponger started before the clock.
ping_pong(N) ->
    Ponger = spawn(fun pong/0),
    Result = timed(fun() -> ping(Ponger, N), N end),
    Ponger ! stop,
    Result.

pong() ->
    receive
        {From, Msg} -> From ! Msg, pong();
        stop -> ok
    end.

ping(_, 0) -> ok;
ping(Ponger, K) ->
    Ponger ! {self(), K},
    receive K -> ping(Ponger, K - 1) end.

%% N processes in a ring pass a token around Laps times (N * Laps hops).
ring(N, Laps) ->
    Me = self(),
    First = build_ring(N - 1, Me),
    Result = timed(fun() ->
        First ! {token, N * Laps},
        receive finished -> N * Laps end
    end),
    First ! stop,
    Result.

%% Processes 1..N-1 forward to the next; the last forwards back to the driver,
%% which closes the ring by forwarding to the first.
build_ring(N, Me) ->
    Last = spawn(fun() -> hop(Me) end),
    Next = lists:foldl(fun(_, To) -> spawn(fun() -> hop(To) end) end, Last, lists:seq(1, N - 1)),
    Driver = self(),
    Closer = spawn(fun() -> close_ring(Next, Driver) end),
    Last ! {next, Closer},
    Next.

hop(To) ->
    receive
        {next, New} -> hop(New);
        {token, 0} -> To ! {token, 0}, hop(To);
        {token, K} -> To ! {token, K - 1}, hop(To);
        stop -> To ! stop
    end.

close_ring(First, Driver) ->
    receive
        {token, 0} -> Driver ! finished, close_ring(First, Driver);
        {token, K} -> First ! {token, K - 1}, close_ring(First, Driver);
        stop -> ok
    end.

%% One sender to N receivers started before the clock, Each messages each; every
%% receiver reports when it has all of its messages.
fan_out(N, Each) ->
    Me = self(),
    Receivers = [spawn(fun() -> count(Me, Each) end) || _ <- lists:seq(1, N)],
    timed(fun() ->
        send_all(Receivers, Each),
        collect(N),
        N * Each
    end).

send_all(_, 0) -> ok;
send_all(Receivers, K) ->
    [R ! msg || R <- Receivers],
    send_all(Receivers, K - 1).

count(Me, 0) -> Me ! done;
count(Me, K) -> receive msg -> count(Me, K - 1) end.

%% Memory of N idle processes (each waiting in receive), per process.
idle_memory(N) ->
    erlang:garbage_collect(),
    Before = erlang:memory(processes),
    Pids = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, N)],
    After = erlang:memory(processes),
    [P ! stop || P <- Pids],
    Each = (After - Before) / N,
    io:format("~-14s n=~-8b ~12.1f bytes each~n", ["idle-memory", N, Each]),
    {"idle-memory", "bytes per process", N, Each, Each, Each}.

json(Figures) ->
    Items = [io_lib:format(
                 "{\"scenario\":\"~s\",\"unit\":\"~s\",\"n\":~b,\"median\":~.3f,\"min\":~.3f,\"max\":~.3f}",
                 [Name, Unit, N, Median, Min, Max])
             || {Name, Unit, N, Median, Min, Max} <- Figures],
    ["{\"runtime\":\"beam\",\"otp\":\"", erlang:system_info(otp_release),
     "\",\"schedulers\":", integer_to_list(erlang:system_info(schedulers)),
     ",\"figures\":[", lists:join(",", Items), "]}"].
