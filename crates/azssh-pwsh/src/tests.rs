//! Unit tests: one small script per feature, run against a [`TestHost`].

use crate::*;

fn service(name: &str, status: &str, start: &str) -> Value {
    PsObject::typed("System.ServiceProcess.ServiceController")
        .with("Status", status)
        .with("Name", name)
        .with("DisplayName", "OpenSSH SSH Server")
        .with("StartType", start)
        .into()
}

fn host() -> TestHost {
    let mut h = TestHost::new();
    h.on("Get-Service", |args, _| {
        let name = args.string_or_pos("Name", 0).unwrap_or_default();
        if name.eq_ignore_ascii_case("sshd") {
            HostResult::Output(CommandOutput::one(service("sshd", "Running", "Automatic")))
        } else {
            HostResult::Output(CommandOutput::error(
                ErrorRecord::new(
                    format!("Cannot find any service with service name '{name}'."),
                    "Microsoft.PowerShell.Commands.ServiceCommandException",
                    "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
                    "ObjectNotFound",
                )
                .with_target(&name, "String"),
            ))
        }
    });
    h.on("hostname", |_, _| {
        HostResult::Output(CommandOutput::native("WIN-VM\r\n", "", 0))
    });
    h
}

fn ps(script: &str) -> Outcome {
    let mut h = host();
    run(&mut h, script, &[])
}

fn out(script: &str) -> String {
    let o = ps(script);
    assert_eq!(o.stderr, "", "script {script:?} wrote errors");
    o.stdout
}

fn lines(script: &str) -> Vec<String> {
    out(script)
        .split("\r\n")
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn one(script: &str) -> String {
    let l = lines(script);
    assert_eq!(l.len(), 1, "{script:?} gave {l:?}");
    l[0].clone()
}

// ------------------------------------------------------------ required examples

#[test]
fn sum_example() {
    assert_eq!(out("$x = 2 + 3; \"sum=$x\""), "sum=5\r\n");
}

#[test]
fn get_service_status_member() {
    assert_eq!(out("(Get-Service sshd).Status"), "Running\r\n");
}

#[test]
fn get_service_expand_property() {
    assert_eq!(
        out("Get-Service sshd | Select-Object -ExpandProperty Status"),
        "Running\r\n"
    );
}

#[test]
fn syntax_error_renders_parser_error() {
    let o = ps("if ($x -eq 1) {\n  'a'\n");
    assert_eq!(o.exit_code, 1);
    assert!(o.stderr.contains("At line:"), "{}", o.stderr);
    assert!(o.stderr.contains("Missing closing '}'"), "{}", o.stderr);
    assert!(o.stderr.contains("ParserError"), "{}", o.stderr);
    assert_eq!(o.stdout, "");
}

#[test]
fn unknown_command_is_not_recognized() {
    let o = ps("Foo-Bar");
    assert_eq!(o.exit_code, 1);
    assert!(o.stderr.starts_with("Foo-Bar : The term 'Foo-Bar' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.\r\nAt line:1 char:1\r\n+ Foo-Bar\r\n+ ~~~~~~~\r\n"), "{}", o.stderr);
    assert!(o.stderr.contains("    + CategoryInfo          : ObjectNotFound: (Foo-Bar:String) [], CommandNotFoundException\r\n"));
    assert!(o
        .stderr
        .contains("    + FullyQualifiedErrorId : CommandNotFoundException\r\n"));
}

#[test]
fn unknown_command_does_not_stop_the_script() {
    let o = ps("Foo-Bar\n'after'");
    assert_eq!(o.stdout, "after\r\n");
    assert_eq!(o.exit_code, 0);
}

// ------------------------------------------------------------ literals and strings

#[test]
fn strings() {
    assert_eq!(one("'it''s'"), "it's");
    assert_eq!(one("$n = 'x'; \"a $n b\""), "a x b");
    assert_eq!(one("\"a`tb\""), "a\tb");
    assert_eq!(one("\"say \"\"hi\"\"\""), "say \"hi\"");
    assert_eq!(one("$a = 1,2; \"$($a.Count) items\""), "2 items");
    assert_eq!(one("\"$env:ProgramData\\ssh\""), "C:\\ProgramData\\ssh");
    assert_eq!(one("$x = 'v'; '$x'"), "$x");
    assert_eq!(one("$a = 1,2,3; \"$a\""), "1 2 3");
}

#[test]
fn here_strings() {
    assert_eq!(out("$n = 'w'\n@\"\nhello $n\nbye\n\"@"), "hello w\nbye\r\n");
    assert_eq!(out("@'\nraw $n\n'@"), "raw $n\r\n");
}

#[test]
fn numbers() {
    assert_eq!(one("0x10"), "16");
    assert_eq!(one("1kb"), "1024");
    assert_eq!(one("1KB"), "1024");
    assert_eq!(one("$x = 2mb / 1mb; $x"), "2");
    assert_eq!(one("7 / 2"), "3.5");
    assert_eq!(one("1.5 + 1"), "2.5");
    assert_eq!(one("10 % 3"), "1");
    assert_eq!(one("2147483647 + 1"), "2147483648");
    assert_eq!(one("[long]5 * 3"), "15");
    assert_eq!(one("'5' + 1"), "51");
    assert_eq!(one("1 + '5'"), "6");
    assert_eq!(one("0.1 + 0.2"), "0.3");
}

#[test]
fn arrays_and_hashtables() {
    assert_eq!(one("@().Count"), "0");
    assert_eq!(one("@(1).Count"), "1");
    assert_eq!(one("(1,2,3).Length"), "3");
    assert_eq!(one("$a = 1,2,3; $a[-1]"), "3");
    assert_eq!(one("$a = @(1,2); $a += 3; $a.Count"), "3");
    assert_eq!(one("$h = @{ a = 1; b = 'x' }; $h.b"), "x");
    assert_eq!(one("$h = @{}; $h['k'] = 5; $h.K"), "5");
    assert_eq!(one("$h = @{a=1}; $h.ContainsKey('A')"), "True");
    assert_eq!(
        one("$h = [ordered]@{ z = 1; a = 2 }; $h.Keys -join ','"),
        "z,a"
    );
    assert_eq!(one("$h = @{a=1}; $h.Add('b', 2); $h.Count"), "2");
    assert_eq!(one("$h = @{a=1;b=2}; $h.Remove('a'); $h.Count"), "1");
    assert_eq!(one("$a = 1..5; $a[1..2] -join ','"), "2,3");
    assert_eq!(one(",(1,2) | ForEach-Object { $_.Count }"), "2");
}

#[test]
fn pscustomobject() {
    assert_eq!(
        one("$o = [pscustomobject]@{ Name = 'n'; V = 2 }; $o.V"),
        "2"
    );
    assert_eq!(one("$o = [pscustomobject]@{ a = 1 }; \"$o\""), "@{a=1}");
    let t = out("[pscustomobject]@{ Name = 'sshd'; Count = 3 }");
    assert!(t.contains("Name Count"), "{t}");
    assert!(t.contains("sshd     3"), "{t}");
}

#[test]
fn casts() {
    assert_eq!(one("[int]'42' + 1"), "43");
    assert_eq!(one("[int]2.5"), "2");
    assert_eq!(one("[int]3.5"), "4");
    assert_eq!(one("[string]5 + 5"), "55");
    assert_eq!(one("[bool]'x'"), "True");
    assert_eq!(one("[bool]''"), "False");
    assert_eq!(one("([array]5).Count"), "1");
    assert_eq!(one("[char]65"), "A");
    assert_eq!(one("([byte[]](1,2,3)).Length"), "3");
    assert_eq!(one("([version]'10.0.17763').Build"), "17763");
    assert_eq!(one("([datetime]'2024-01-02').Year"), "2024");
    assert_eq!(one("'5' -as [int]"), "5");
    assert_eq!(one("5 -is [int]"), "True");
    assert_eq!(one("'x' -is [string]"), "True");
    let o = ps("[int]'abc'");
    assert!(
        o.stderr
            .contains("Cannot convert value \"abc\" to type \"System.Int32\""),
        "{}",
        o.stderr
    );
}

// ------------------------------------------------------------ operators

#[test]
fn comparison_operators() {
    assert_eq!(one("'ABC' -eq 'abc'"), "True");
    assert_eq!(one("'ABC' -ceq 'abc'"), "False");
    assert_eq!(one("5 -gt 3"), "True");
    assert_eq!(one("'10' -lt 9"), "True");
    assert_eq!(one("10 -lt '9'"), "False");
    assert_eq!(one("'OpenSSH.Server' -like 'openssh*'"), "True");
    assert_eq!(one("'abc' -notlike 'x*'"), "True");
    assert_eq!(one("(1,2,3,2) -eq 2 -join ','"), "2,2");
    assert_eq!(one("(1,2,3) -contains 2"), "True");
    assert_eq!(one("'a','b' -ccontains 'A'"), "False");
    assert_eq!(one("2 -in 1,2"), "True");
    assert_eq!(one("2 -notin 1,2"), "False");
    assert_eq!(one("$null -eq $x"), "True");
}

#[test]
fn match_and_replace() {
    assert_eq!(
        one("if ('v8.1p1' -match 'v(\\d+)\\.(\\d+)') { $Matches[1] }"),
        "8"
    );
    assert_eq!(one("'abc' -notmatch 'z'"), "True");
    assert_eq!(one("'hello world' -replace 'o', '0'"), "hell0 w0rld");
    assert_eq!(
        one("'John Smith' -replace '(\\w+) (\\w+)', '$2, $1'"),
        "Smith, John"
    );
    assert_eq!(one("'aXb' -creplace 'x', '-'"), "aXb");
    assert_eq!(one("('a,b,,c' -split ',').Count"), "4");
    assert_eq!(one("(-split ' a  b ').Count"), "2");
    assert_eq!(one("1,2,3 -join '+'"), "1+2+3");
    assert_eq!(one("-join ('a','b')"), "ab");
}

#[test]
fn format_operator() {
    assert_eq!(one("'{0}-{1}' -f 'a', 5"), "a-5");
    assert_eq!(one("'0x{0:x8}' -f -2147024894"), "0x80070002");
    assert_eq!(one("'{0:D3}' -f 7"), "007");
    assert_eq!(one("'{0:N2}' -f 1234.5"), "1,234.50");
    assert_eq!(one("'{0,5}|' -f 'ab'"), "   ab|");
    assert_eq!(one("'{{x}}' -f 1"), "{x}");
}

#[test]
fn logical_operators() {
    assert_eq!(one("$true -and $false"), "False");
    assert_eq!(one("$true -or $false"), "True");
    assert_eq!(one("-not $false"), "True");
    assert_eq!(one("!$true"), "False");
    assert_eq!(one("$true -xor $true"), "False");
    assert_eq!(one("$false -and (Foo-Bar)"), "False");
}

#[test]
fn assignment_operators() {
    assert_eq!(one("$i = 1; $i += 2; $i *= 3; $i -= 1; $i"), "8");
    assert_eq!(one("$i = 1; $i++; $i"), "2");
    assert_eq!(one("$i = 1; ++$i; $i"), "2");
    assert_eq!(one("$s = 'a'; $s += 'b'; $s"), "ab");
    assert_eq!(one("$a, $b = 1, 2; \"$b$a\""), "21");
    assert_eq!(out("$i = 0; $i++"), "");
}

// ------------------------------------------------------------ control flow

#[test]
fn if_elseif_else() {
    assert_eq!(
        one("$x = 5; if ($x -lt 3) { 'a' } elseif ($x -lt 10) { 'b' } else { 'c' }"),
        "b"
    );
    assert_eq!(one("if ($null) { 'y' } else { 'n' }"), "n");
    assert_eq!(one("if (@()) { 'y' } else { 'n' }"), "n");
}

#[test]
fn loops() {
    assert_eq!(one("$s = 0; foreach ($i in 1..4) { $s += $i }; $s"), "10");
    assert_eq!(
        one("$s = ''; for ($i = 0; $i -lt 3; $i++) { $s += $i }; $s"),
        "012"
    );
    assert_eq!(one("$i = 0; while ($i -lt 5) { $i++ }; $i"), "5");
    assert_eq!(one("$i = 0; do { $i++ } while ($i -lt 3); $i"), "3");
    assert_eq!(one("$i = 0; do { $i++ } until ($i -ge 4); $i"), "4");
    assert_eq!(one("$r = foreach ($i in 1..10) { if ($i -eq 3) { continue }; if ($i -gt 4) { break }; $i }; $r -join ','"), "1,2,4");
}

#[test]
fn loops_emit_in_order() {
    assert_eq!(lines("foreach ($i in 1..3) { $i }"), vec!["1", "2", "3"]);
}

#[test]
fn switch_statement() {
    assert_eq!(
        one("switch ('b') {\n 'a' { 'A' }\n 'b' { 'B' }\n default { 'D' }\n}"),
        "B"
    );
    assert_eq!(one("switch ('z') { 'a' { 'A' }; default { 'D' } }"), "D");
    assert_eq!(one("switch -wildcard ('OpenSSH') { 'open*' { 'W' } }"), "W");
    assert_eq!(
        one("switch -regex ('v9.5') { '^v(\\d)' { $Matches[1] } }"),
        "9"
    );
    assert_eq!(
        lines("switch (1,2) {\n 1 { 'one' }\n 2 { 'two' }\n}"),
        vec!["one", "two"]
    );
    assert_eq!(
        one("switch (5) {\n { $_ -gt 3 } { 'big'; break }\n 5 { 'five' }\n}"),
        "big"
    );
    assert_eq!(
        one("switch ('Running') {\n running { 'r' }\n default { 'd' }\n}"),
        "r"
    );
}

#[test]
fn try_catch_finally() {
    assert_eq!(
        lines(
            "try { throw 'boom' } catch { \"caught $($_.Exception.Message)\" } finally { 'fin' }"
        ),
        vec!["caught boom", "fin"]
    );
    assert_eq!(
        one("try { [int]'x' } catch { $_.FullyQualifiedErrorId }"),
        "InvalidCastFromStringToInteger"
    );
    assert_eq!(
        one("try { throw 'e1' } catch [System.IO.IOException] { 'io' } catch { 'other' }"),
        "other"
    );
    assert_eq!(
        one("try { Get-Service nope -ErrorAction Stop } catch { $_.Exception.Message }"),
        "Cannot find any service with service name 'nope'."
    );
    assert_eq!(
        one("try { Foo-Bar } catch { $_.Exception.GetType().FullName }"),
        "System.Management.Automation.CommandNotFoundException"
    );
    assert_eq!(one("try { [IO.File]::ReadAllText('C:\\nope.txt') } catch { '0x{0:x8}' -f $_.Exception.HResult }"), "0x80131501");
    assert_eq!(one("try { [IO.File]::ReadAllText('C:\\nope.txt') } catch { '0x{0:x8}' -f $_.Exception.InnerException.HResult }"), "0x80070002");
    assert_eq!(one("try { [IO.File]::ReadAllText('C:\\nope.txt') } catch { $_.Exception.Message }"), "Exception calling \"ReadAllText\" with \"1\" argument(s): \"Could not find file 'C:\\nope.txt'.\"");
    assert_eq!(
        one("try { [IO.File]::ReadAllText('C:\\nope.txt') } catch { $_.FullyQualifiedErrorId }"),
        "FileNotFoundException"
    );
    assert_eq!(one("try { [IO.File]::ReadAllText('C:\\nope.txt') } catch [System.Management.Automation.MethodInvocationException] { 'typed' }"), "typed");
}

#[test]
fn uncaught_throw_exits_1() {
    let o = ps("'before'; throw 'bad thing'; 'after'");
    assert_eq!(o.stdout, "before\r\n");
    assert_eq!(o.exit_code, 1);
    assert!(
        o.stderr.starts_with("bad thing\r\nAt line:1 char:11\r\n"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains("OperationStopped: (bad thing:String) [], RuntimeException"),
        "{}",
        o.stderr
    );
}

#[test]
fn error_variable_and_action() {
    let o = ps("Get-Service nope; 'next'");
    assert!(
        o.stderr
            .starts_with("Get-Service : Cannot find any service with service name 'nope'."),
        "{}",
        o.stderr
    );
    assert_eq!(o.stdout, "next\r\n");
    assert_eq!(
        out("Get-Service nope -ErrorAction SilentlyContinue; $Error.Count"),
        "1\r\n"
    );
    assert_eq!(out("Get-Service nope 2>$null; 'q'"), "q\r\n");
    let o = ps("$ErrorActionPreference = 'Stop'; Get-Service nope; 'after'");
    assert_eq!(o.stdout, "");
    assert_eq!(o.exit_code, 1);
}

#[test]
fn exit_code() {
    assert_eq!(ps("exit 3").exit_code, 3);
    assert_eq!(ps("'a'").exit_code, 0);
}

// ------------------------------------------------------------ functions

#[test]
fn functions_and_params() {
    assert_eq!(one("function Add($a, $b) { $a + $b }; Add 2 3"), "5");
    assert_eq!(one("function F { param([int]$n = 4); $n * 2 }; F"), "8");
    assert_eq!(
        one("function F {\n param([int]$n = 4)\n $n * 2 }; F -n 1"),
        "2"
    );
    assert_eq!(
        one("function F { param([switch]$Force); if ($Force) { 'f' } else { 'n' } }; F -Force"),
        "f"
    );
    assert_eq!(one("function F { param([switch]$Force); if ($Force) { 'f' } else { 'n' } }; F -Force:$false"), "n");
    assert_eq!(one("function F { $args.Count }; F 1 2 3"), "3");
    assert_eq!(one("function Limit([string]$m) { if ($m.Length -gt 3) { $m.Substring(0, 3) } else { $m } }; Limit 'abcdef'"), "abc");
    assert_eq!(one("function F { return 1; 2 }; F"), "1");
    let o = ps("function F { param([Parameter(Mandatory)]$x); $x }; F");
    assert!(
        o.stderr.contains("missing mandatory parameters: x"),
        "{}",
        o.stderr
    );
}

#[test]
fn scopes() {
    assert_eq!(one("$x = 1; function F { $x = 2 }; F; $x"), "1");
    assert_eq!(one("$x = 1; function F { $script:x = 2 }; F; $x"), "2");
    assert_eq!(one("$x = 1; function F { $x }; F"), "1");
    assert_eq!(one("$x = 1; & { $x = 5 }; $x"), "1");
    assert_eq!(one("$x = 1; . { $x = 5 }; $x"), "5");
}

#[test]
fn script_blocks() {
    assert_eq!(one("$sb = { param($a); $a * 2 }; & $sb 4"), "8");
    assert_eq!(one("$sb = { 'hi' }; $sb.Invoke()"), "hi");
    assert_eq!(
        one("Invoke-Command -ScriptBlock { param($a); \"x$a\" } -ArgumentList 3"),
        "x3"
    );
    assert_eq!(
        one("function F { begin { $t = 0 } process { $t += $_ } end { $t } }; 1,2,3 | F"),
        "6"
    );
}

#[test]
fn run_command_parameters() {
    let mut h = host();
    let args = vec![
        ("Name".to_string(), Value::Str("a b".into())),
        ("Count".to_string(), Value::Int(2)),
    ];
    let o = run(&mut h, "param($Name, [int]$Count)\n\"$Name/$Count\"", &args);
    assert_eq!(o.stdout, "a b/2\r\n");
    let o = run(&mut h, "$args -join '|'", &args);
    assert_eq!(o.stdout, "-Name|a b|-Count|2\r\n");
}

// ------------------------------------------------------------ pipelines

#[test]
fn pipeline_cmdlets() {
    assert_eq!(one("1..10 | Where-Object { $_ % 2 -eq 0 } | Measure-Object -Sum | Select-Object -ExpandProperty Sum"), "30");
    assert_eq!(
        one("(1..5 | ForEach-Object { $_ * 2 }) -join ','"),
        "2,4,6,8,10"
    );
    assert_eq!(one("(3,1,2 | Sort-Object) -join ','"), "1,2,3");
    assert_eq!(one("(3,1,2 | Sort-Object -Descending) -join ','"), "3,2,1");
    assert_eq!(one("(1,1,2 | Select-Object -Unique) -join ','"), "1,2");
    assert_eq!(one("(1..10 | Select-Object -First 2) -join ','"), "1,2");
    assert_eq!(one("(1..10 | Select-Object -Last 2) -join ','"), "9,10");
    assert_eq!(one("(1..4 | Measure-Object).Count"), "4");
    assert_eq!(one("('b','a','b' | Sort-Object -Unique) -join ','"), "a,b");
    assert_eq!(out("1 | Out-Null"), "");
    assert_eq!(one("('a','b' | Out-String).Length"), "6");
    assert_eq!(
        one("(Get-Service sshd | Where-Object Status -eq 'Running').Name"),
        "sshd"
    );
    assert_eq!(
        one("(Get-Service sshd | Where-Object -Property Status -EQ 'Stopped') -eq $null"),
        "True"
    );
    assert_eq!(one("('a','bb' | ForEach-Object Length) -join ','"), "1,2");
    assert_eq!(
        one("(Get-Service sshd | Select-Object Name, Status).Status"),
        "Running"
    );
    assert_eq!(one("@(1,2,3).Where({ $_ -gt 1 }).Count"), "2");
    assert_eq!(one("('a','b','a' | Group-Object | Sort-Object Count -Descending | Select-Object -First 1).Name"), "a");
}

#[test]
fn void_and_null_assignment() {
    assert_eq!(out("[void](1 + 1)"), "");
    assert_eq!(out("$null = 5"), "");
    assert_eq!(out("$h = @{}; $h.Add('a', 1)"), "");
    assert_eq!(
        one("function F { [void]1; $h = @{}; $h.Add(1,1) }; @(F).Count"),
        "0"
    );
}

#[test]
fn write_streams() {
    let o = ps("Write-Host 'hi'; Write-Output 'o'; Write-Warning 'w'");
    assert_eq!(o.stdout, "hi\r\no\r\nWARNING: w\r\n");
    let o = ps("Write-Error 'bad'; 'next'");
    assert!(o.stderr.contains(" : bad\r\n"), "{}", o.stderr);
    assert!(o.stderr.contains("WriteErrorException"), "{}", o.stderr);
    assert_eq!(o.stdout, "next\r\n");
}

#[test]
fn automatic_variables() {
    assert_eq!(one("$PSVersionTable.PSVersion.Major"), "5");
    assert_eq!(one("$PSVersionTable.PSEdition"), "Desktop");
    assert_eq!(one("$env:COMPUTERNAME"), "WIN-VM");
    assert_eq!(one("$env:FOO = 'bar'; $env:FOO"), "bar");
    assert_eq!(one("$ErrorActionPreference"), "Continue");
    assert_eq!(lines("hostname; $LASTEXITCODE"), vec!["WIN-VM", "0"]);
}

// ------------------------------------------------------------ .NET

#[test]
fn dotnet_statics() {
    assert_eq!(one("[IO.Path]::Combine('C:\\a', 'b')"), "C:\\a\\b");
    assert_eq!(
        one("[Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes('hi'))"),
        "aGk="
    );
    assert_eq!(
        one("[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('aGk='))"),
        "hi"
    );
    assert_eq!(one("[Text.Encoding]::Unicode.GetBytes('a').Length"), "2");
    assert_eq!(one("[Environment]::MachineName"), "WIN-VM");
    assert_eq!(one("[Environment]::OSVersion.Version.Build"), "20348");
    assert_eq!(
        one("[Environment]::GetEnvironmentVariable('ProgramData')"),
        "C:\\ProgramData"
    );
    assert_eq!(one("[Environment]::NewLine.Length"), "2");
    assert_eq!(one("[DateTime]::Parse('2024-03-04T05:06:07Z').Month"), "3");
    assert_eq!(one("([DateTime]::UtcNow).Year -ge 2024"), "True");
    assert_eq!(one("[Math]::Max(3, 7)"), "7");
    assert_eq!(one("[string]::IsNullOrEmpty('')"), "True");
}

#[test]
fn string_methods() {
    assert_eq!(one("'  x  '.Trim()"), "x");
    assert_eq!(one("'\"C:\\x\"'.Trim('\"')"), "C:\\x");
    assert_eq!(one("'a,b'.Split(',')[1]"), "b");
    assert_eq!(one("'abc'.Replace('b', 'B')"), "aBc");
    assert_eq!(one("'abc'.StartsWith('a')"), "True");
    assert_eq!(one("'abc'.EndsWith('C')"), "False");
    assert_eq!(one("'abc'.Contains('bc')"), "True");
    assert_eq!(one("'abcdef'.Substring(2, 2)"), "cd");
    assert_eq!(one("'abc'.IndexOf('c')"), "2");
    assert_eq!(one("'AbC'.ToLower() + 'x'.ToUpper()"), "abcX");
    assert_eq!(one("'abc'.Length"), "3");
    assert_eq!(one("'7'.PadLeft(3, '0')"), "007");
    let o = ps("'abc'.Substring(5)");
    assert!(
        o.stderr.contains("Exception calling \"Substring\""),
        "{}",
        o.stderr
    );
}

#[test]
fn method_on_null_is_an_error() {
    let o = ps("$x = $null; $x.Trim()");
    assert!(
        o.stderr
            .contains("You cannot call a method on a null-valued expression."),
        "{}",
        o.stderr
    );
}

// ------------------------------------------------------------ files

#[test]
fn file_encodings() {
    let mut h = host();
    let o = run(&mut h, "Set-Content -Path C:\\a.txt -Value 'x'; Set-Content C:\\b.txt 'y' -Encoding UTF8; 'z' | Out-File C:\\c.txt; Add-Content C:\\a.txt 'w'", &[]);
    assert_eq!(o.stderr, "");
    assert_eq!(h.file("C:\\a.txt").unwrap(), b"x\r\nw\r\n");
    assert_eq!(h.file("c:\\B.TXT").unwrap(), b"\xEF\xBB\xBFy\r\n");
    assert_eq!(h.file("C:\\c.txt").unwrap(), b"\xFF\xFEz\0\r\0\n\0");
}

#[test]
fn dotnet_file_io() {
    let mut h = host();
    let o = run(&mut h, "[IO.File]::WriteAllText('C:\\k', 'abc'); [IO.File]::AppendAllText('C:\\k', 'd'); [IO.File]::ReadAllText('C:\\k'); [IO.File]::Exists('C:\\k'); [IO.File]::ReadAllBytes('C:\\k')[0]", &[]);
    assert_eq!(o.stdout, "abcd\r\nTrue\r\n97\r\n");
    assert_eq!(h.file("C:\\k").unwrap(), b"abcd");
    let o = run(&mut h, "$e = New-Object Text.UTF8Encoding $false; [IO.File]::WriteAllText('C:\\n', 'q', $e); [IO.File]::WriteAllText('C:\\m', 'q', [Text.Encoding]::UTF8)", &[]);
    assert_eq!(o.stderr, "");
    assert_eq!(h.file("C:\\n").unwrap(), b"q");
    assert_eq!(h.file("C:\\m").unwrap(), b"\xEF\xBB\xBFq");
}

#[test]
fn filesystem_cmdlets() {
    let mut h = host();
    h.add_file(
        "C:\\ProgramData\\ssh\\ssh_host_ed25519_key.pub",
        b"ssh-ed25519 AAAA host\r\n",
    );
    h.add_file(
        "C:\\ProgramData\\ssh\\ssh_host_rsa_key.pub",
        b"ssh-rsa BBBB host\r\n",
    );
    h.add_file("C:\\ProgramData\\ssh\\sshd_config", b"Port 22\r\n");
    let o = run(&mut h, "Test-Path C:\\ProgramData\\ssh; Test-Path 'C:\\nope'; (Get-ChildItem C:\\ProgramData\\ssh -Filter 'ssh_host_*_key.pub').Count; Get-Content C:\\ProgramData\\ssh\\sshd_config; New-Item -ItemType Directory -Path C:\\x\\y -Force | Out-Null; Test-Path C:\\x\\y -PathType Container; Remove-Item C:\\ProgramData\\ssh\\sshd_config; Test-Path C:\\ProgramData\\ssh\\sshd_config", &[]);
    assert_eq!(o.stderr, "");
    assert_eq!(
        o.stdout,
        "True\r\nFalse\r\n2\r\nPort 22\r\nTrue\r\nFalse\r\n"
    );
    let o = run(&mut h, "Get-Content C:\\missing.txt", &[]);
    assert!(
        o.stderr.starts_with(
            "Get-Content : Cannot find path 'C:\\missing.txt' because it does not exist."
        ),
        "{}",
        o.stderr
    );
    let o = run(&mut h, "Join-Path $env:ProgramData 'ssh\\administrators_authorized_keys'; Split-Path -Parent 'C:\\a\\b\\c'; Split-Path -Leaf 'C:\\a\\b\\c'", &[]);
    assert_eq!(
        o.stdout,
        "C:\\ProgramData\\ssh\\administrators_authorized_keys\r\nC:\\a\\b\r\nc\r\n"
    );
}

// ------------------------------------------------------------ JSON

#[test]
fn json_51_format() {
    assert_eq!(one("@{ a = 1 } | ConvertTo-Json -Compress"), "{\"a\":1}");
    let t = out("[ordered]@{ a = 1; b = 'x'; c = $true; d = $null } | ConvertTo-Json");
    assert_eq!(t, "{\r\n    \"a\":  1,\r\n    \"b\":  \"x\",\r\n    \"c\":  true,\r\n    \"d\":  null\r\n}\r\n");
    let t = out("[ordered]@{ a = @(1, 2) } | ConvertTo-Json");
    assert_eq!(
        t,
        "{\r\n    \"a\":  [\r\n              1,\r\n              2\r\n          ]\r\n}\r\n"
    );
    assert_eq!(
        one("\"it's <b>\" | ConvertTo-Json"),
        "\"it\\u0027s \\u003cb\\u003e\""
    );
    assert_eq!(
        one(
            "[ordered]@{ v = 1; s = [ordered]@{ x = @('a') } } | ConvertTo-Json -Compress -Depth 4"
        ),
        "{\"v\":1,\"s\":{\"x\":[\"a\"]}}"
    );
    assert_eq!(
        one("('{\"a\": {\"b\": [1, 2]}}' | ConvertFrom-Json).a.b[1]"),
        "2"
    );
}

// ------------------------------------------------------------ check_ps51

#[test]
fn check_ps51_accepts_plain_51() {
    assert!(check_ps51("$x = 1; if ($x) { 'a' } else { 'b' }").is_empty());
    assert!(check_ps51("Get-Service | ? { $_.Status -eq 'Running' }").is_empty());
}

#[test]
fn check_ps51_pipeline_chains() {
    let p = check_ps51("Get-Service sshd && 'ok'");
    assert!(
        p.iter().any(|p| p.kind == ProblemKind::PipelineChain),
        "{p:?}"
    );
    let p = check_ps51("Get-Service sshd || 'ok'");
    assert!(
        p.iter().any(|p| p.kind == ProblemKind::PipelineChain),
        "{p:?}"
    );
}

#[test]
fn check_ps51_null_coalescing() {
    let p = check_ps51("$y = $x ?? 1");
    assert!(
        p.iter().any(|p| p.kind == ProblemKind::NullCoalescing),
        "{p:?}"
    );
    let p = check_ps51("$x ??= 1");
    assert!(
        p.iter()
            .any(|p| p.kind == ProblemKind::NullCoalescingAssignment),
        "{p:?}"
    );
}

#[test]
fn check_ps51_null_conditional() {
    let p = check_ps51("${x}?.Name");
    assert!(
        p.iter().any(|p| p.kind == ProblemKind::NullConditional),
        "{p:?}"
    );
    let p = check_ps51("${x}?[0]");
    assert!(
        p.iter().any(|p| p.kind == ProblemKind::NullConditional),
        "{p:?}"
    );
}

#[test]
fn check_ps51_ternary() {
    let p = check_ps51("$y = $x ? 'a' : 'b'");
    assert!(p.iter().any(|p| p.kind == ProblemKind::Ternary), "{p:?}");
}

#[test]
fn check_ps51_syntax_and_ascii() {
    let p = check_ps51("if ($x) {");
    assert!(p.iter().any(|p| p.kind == ProblemKind::Syntax), "{p:?}");
    let p = check_ps51("'caf\u{e9}'");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].kind, ProblemKind::NonAscii);
    assert_eq!((p[0].line, p[0].column), (1, 5));
}

#[test]
fn parse_errors_are_reported_like_powershell() {
    let e = parse("$x = 'unterminated").unwrap_err();
    let text = e.render(None);
    assert!(text.contains("At line:1"), "{text}");
    assert!(text.contains("ParserError"), "{text}");
    assert!(parse("Get-Service sshd && 'x'").is_err());
}

// ------------------------------------------------------------ hostile input

fn run_in_small_stack(script: String) -> Outcome {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let mut h = TestHost::new();
            run(&mut h, &script, &[])
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deep_nesting_does_not_overflow() {
    for n in [50, 150, 400, 3000] {
        let o = run_in_small_stack(format!("{}1{}", "(".repeat(n), ")".repeat(n)));
        assert!(o.exit_code == 0 || !o.stderr.is_empty(), "{n}");
        let o = run_in_small_stack(format!("{}1{}", "@(".repeat(n), ")".repeat(n)));
        assert!(o.exit_code == 0 || !o.stderr.is_empty(), "{n}");
        let o = run_in_small_stack(format!(
            "{}'x'{}",
            "if ($true) { ".repeat(n),
            " }".repeat(n)
        ));
        assert!(o.exit_code == 0 || !o.stderr.is_empty(), "{n}");
        let o = run_in_small_stack(format!("$x = {}1{}", "[int](".repeat(n), ")".repeat(n)));
        assert!(o.exit_code == 0 || !o.stderr.is_empty(), "{n}");
    }
}

#[test]
fn recursion_is_bounded() {
    let o = run_in_small_stack("function F($n) { F ($n + 1) }; F 0".into());
    assert_eq!(o.exit_code, 1);
    assert!(o.stderr.contains("call depth overflow"), "{}", o.stderr);
    let o = run_in_small_stack("function F($n) { 1 | ForEach-Object { F ($n + 1) } }; F 0".into());
    assert_eq!(o.exit_code, 1);
    let o = run_in_small_stack("function F($n) { 1 | Where-Object { F ($n + 1) } }; F 0".into());
    assert_eq!(o.exit_code, 1);
    let o = run_in_small_stack("$sb = { & $sb }; & $sb".into());
    assert_eq!(o.exit_code, 1);
}

#[test]
fn infinite_loops_are_bounded() {
    let limits = Limits {
        max_steps: 20_000,
        ..Limits::default()
    };
    let mut h = TestHost::new();
    let o = Interpreter::new(&mut h)
        .with_limits(limits)
        .run_text("while ($true) { }", &[]);
    assert_eq!(o.exit_code, 1);
    assert!(
        o.stderr.contains("exceeded 20000 statements"),
        "{}",
        o.stderr
    );
    let o = Interpreter::new(&mut h)
        .with_limits(limits)
        .run_text("for (;;) { 'spam' * 1000 }", &[]);
    assert_eq!(o.exit_code, 1);
    let o = Interpreter::new(&mut h)
        .with_limits(limits)
        .run_text("for (;;) { Write-Host ('spam' * 100000) }", &[]);
    assert_eq!(o.exit_code, 1);
    assert!(o.stderr.contains("output exceeded"), "{}", o.stderr);
}

#[test]
fn odd_inputs_do_not_panic() {
    for s in [
        "",
        "\"unterminated",
        "'",
        "@\"\nno end",
        "99999999999999999999999999",
        "0xFFFFFFFFFFFFFFFFFFFF",
        "1..100000000",
        "'x' * 100000000",
        "$a = @(); $a[5]",
        "$null[0]",
        "[int]::Foo()",
        "[NoSuch.Type]::X",
        "& $null",
        "$x = {",
        "}}}}",
        "function",
        "param(",
        "switch",
        "-",
        "$",
        "@{",
        "`",
        "1/0",
        "[char]::MaxValue",
        "'a' -match '('",
        "'{0' -f 1",
        "'{5}' -f 1",
        "class Foo { }",
        "$a = 1; $a.b.c.d = 5",
        "Get-Content",
        "break",
        "continue",
        "return 5",
        "throw",
        "..",
        "1,,2",
        "\u{0}",
        "[datetime]'garbage'",
        "'abc'.Substring(-1)",
        "$h = @{}; $h.Add('a',1); $h.Add('a',2)",
    ] {
        let _ = run_in_small_stack(s.to_string());
        let _ = check_ps51(s);
    }
}

#[test]
fn statement_errors_inside_functions_end_only_the_statement() {
    let o = ps("function F { Foo-Bar; 'still here' }; F");
    assert_eq!(o.stdout, "still here\r\n");
    assert!(o.stderr.contains("'Foo-Bar' is not recognized"));
    assert_eq!(
        one("function F { Foo-Bar; 'x' }; try { F } catch { 'caught' }"),
        "caught"
    );
}

#[test]
fn redirections() {
    let mut h = host();
    let o = run(
        &mut h,
        "'a' > C:\\o.txt; 'b' >> C:\\o.txt; Get-Content C:\\o.txt",
        &[],
    );
    assert_eq!(o.stdout, "a\r\nb\r\n");
    assert_eq!(&h.file("C:\\o.txt").unwrap()[..4], b"\xFF\xFEa\0");
    let o = run(
        &mut h,
        "$x = Get-Service nope 2>&1; $x.Exception.Message",
        &[],
    );
    assert_eq!(
        o.stdout,
        "Cannot find any service with service name 'nope'.\r\n"
    );
    assert_eq!(o.stderr, "");
    let o = run(&mut h, "Get-Service nope *>$null; 'k'", &[]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("k\r\n", ""));
}

#[test]
fn registry_paths_go_to_the_host() {
    let mut h = host();
    h.on("Get-ItemProperty", |args, _| {
        let p = args.string_or_pos("Path", 0).unwrap_or_default();
        assert_eq!(p, "HKLM:\\SOFTWARE\\OpenSSH");
        HostResult::Output(CommandOutput::one(PsObject::custom().with(
            "DefaultShell",
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        )))
    });
    h.on("Test-Path", |_, _| {
        HostResult::Output(CommandOutput::one(true))
    });
    let o = run(&mut h, "(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\OpenSSH' -Name DefaultShell).DefaultShell; Test-Path HKLM:\\SOFTWARE\\OpenSSH", &[]);
    assert_eq!(
        o.stdout,
        "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\r\nTrue\r\n"
    );
}

#[test]
fn native_commands_and_exit_codes() {
    let mut h = host();
    h.on("cmd", |args, _| {
        let a = args.native_args();
        assert_eq!(a, vec!["/c", "exit 3"]);
        HostResult::Output(CommandOutput::native("", "", 3))
    });
    let o = run(&mut h, "cmd /c 'exit 3'; \"code=$LASTEXITCODE\"", &[]);
    assert_eq!(o.stdout, "code=3\r\n");
    let o = run(&mut h, "$out = hostname; $out.Length", &[]);
    assert_eq!(o.stdout, "6\r\n");
}

#[test]
fn misc_cmdlets() {
    assert_eq!(
        one("(Get-Date -Date '2024-05-06T07:08:09' -Format 'yyyy-MM-dd HH:mm')"),
        "2024-05-06 07:08"
    );
    assert_eq!(one("$l = New-Object System.Collections.ArrayList; [void]$l.Add(1); [void]$l.Add(2); $l.Count"), "2");
    assert_eq!(one("Invoke-Expression '1 + 2'"), "3");
    assert_eq!(one("(New-Object PSObject -Property @{ a = 5 }).a"), "5");
    assert_eq!(one("Set-Variable -Name q -Value 4; $q"), "4");
    assert_eq!(one("(Get-Variable q -ValueOnly) -eq $null"), "True");
    let t = out("[pscustomobject]@{ a = 1; b = 2 } | Format-List");
    assert!(t.contains("a : 1\r\nb : 2"), "{t:?}");
    assert_eq!(
        one("(1,2,3 | Measure-Object -Maximum -Minimum -Average).Average"),
        "2"
    );
    assert_eq!(
        one("$h = 1,2,2 | Group-Object -AsHashTable; $h['2'].Count"),
        "2"
    );
    assert_eq!(one("(Select-Object -InputObject 5 -First 1)"), "5");
}

#[test]
fn output_formatting() {
    assert_eq!(out("$h = [ordered]@{ a = 1; bb = 'x' }; $h"), "\r\nName                           Value\r\n----                           -----\r\na                              1\r\nbb                             x\r\n\r\n");
    let t = out("Get-Service sshd");
    assert!(t.contains("Status  Name DisplayName        StartType\r\n------  ---- -----------        ---------\r\nRunning sshd OpenSSH SSH Server Automatic\r\n"), "{t:?}");
    let t = out("[pscustomobject]@{ a = 1; b = 2; c = 3; d = 4; e = 5 }");
    assert_eq!(t, "\r\na : 1\r\nb : 2\r\nc : 3\r\nd : 4\r\ne : 5\r\n\r\n");
    assert_eq!(out("$true; 1.5; [char]'x'"), "True\r\n1.5\r\nx\r\n");
}

#[test]
fn error_record_details() {
    assert_eq!(
        one("try { throw 'x' } catch { $_.CategoryInfo.Category }"),
        "OperationStopped"
    );
    assert_eq!(
        one("try { throw 'x' } catch { $_.InvocationInfo.ScriptLineNumber }"),
        "1"
    );
    assert_eq!(
        one("try { Get-Service nope -ErrorAction Stop } catch { $_.FullyQualifiedErrorId }"),
        "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand"
    );
    assert_eq!(
        one("try { 1/0 } catch { $_.Exception.Message }"),
        "Attempted to divide by zero."
    );
    assert_eq!(
        one("try { throw (New-Object System.Exception 'inner') } catch { $_.Exception.Message }"),
        "inner"
    );
    assert_eq!(
        one("$e = $null; try { throw 'a' } catch { $e = $_ }; $e.Exception.Message"),
        "a"
    );
    assert_eq!(one("try { try { throw 'in' } catch { throw } } catch { \"outer:$($_.Exception.Message)\" }"), "outer:in");
    assert_eq!(
        lines("try { try { throw 'in' } finally { Write-Host 'f' } } catch { 'c' }"),
        vec!["f", "c"]
    );
}

#[test]
fn error_action_on_write_error() {
    assert_eq!(
        out("Write-Error 'x' -ErrorAction SilentlyContinue; 'y'"),
        "y\r\n"
    );
    assert_eq!(
        one("try { Write-Error 'x' -ErrorAction Stop } catch { $_.Exception.Message }"),
        "x"
    );
    assert_eq!(one("$ErrorActionPreference = 'SilentlyContinue'; Get-Service nope; $Error[0].Exception.Message"), "Cannot find any service with service name 'nope'.");
}

#[test]
fn parser_error_messages() {
    let msg = |s: &str| parse(s).unwrap_err().problems[0].message.clone();
    assert_eq!(
        msg("$x = \"abc"),
        "The string is missing the terminator: \"."
    );
    assert_eq!(
        msg("if ($x) {"),
        "Missing closing '}' in statement block or type definition."
    );
    assert_eq!(msg("$a = (1 + 2"), "Missing closing ')' in expression.");
    assert_eq!(
        msg("1 +"),
        "You must provide a value expression following the '+' operator."
    );
    assert_eq!(
        msg("Get-Service |"),
        "An empty pipe element is not allowed."
    );
    assert_eq!(
        msg("a && b"),
        "The token '&&' is not a valid statement separator in this version."
    );
    let e = parse("$x = 1\nif ($x) {").unwrap_err();
    assert_eq!(e.problems[0].position.line, 2);
    let text = e.render(Some("C:\\Packages\\script.ps1"));
    assert!(
        text.starts_with("At C:\\Packages\\script.ps1:2 char:"),
        "{text}"
    );
}

#[test]
fn typed_catch_sees_inner_exceptions() {
    assert_eq!(one("try { [IO.File]::ReadAllText('C:\\nope') } catch [System.IO.FileNotFoundException] { 'fnf' } catch { 'other' }"), "fnf");
    assert_eq!(one("try { Foo-Bar } catch [System.Management.Automation.CommandNotFoundException] { 'cnf' }"), "cnf");
}

#[test]
fn dollar_question_reflects_the_previous_statement() {
    let trailer = "\n$ok = $?; $code = $LASTEXITCODE\nif ($ok) { $code = 0 } elseif (-not $code) { $code = 1 }; Write-Output ('EXIT:' + $code)";
    assert!(out(&format!("'fine'{trailer}")).ends_with("EXIT:0\r\n"));
    let o = ps(&format!("Get-Service nope{trailer}"));
    assert!(o.stdout.ends_with("EXIT:1\r\n"), "{o:?}");
    let o = ps(&format!("Foo-Bar{trailer}"));
    assert!(o.stdout.ends_with("EXIT:1\r\n"), "{o:?}");
    let mut h = host();
    h.on("cmd", |_, _| {
        HostResult::Output(CommandOutput::native("", "", 5))
    });
    let o = run(&mut h, &format!("cmd /c 'exit 5'{trailer}"), &[]);
    assert!(o.stdout.ends_with("EXIT:5\r\n"), "{o:?}");
    assert_eq!(one("Get-Service nope 2>$null; $?"), "False");
    assert_eq!(lines("1; $?"), vec!["1", "True"]);
}

#[test]
fn select_object_table_like_windows() {
    assert_eq!(
        out("Get-Service sshd | Select-Object Status"),
        "\r\nStatus\r\n------\r\nRunning\r\n\r\n"
    );
}

#[test]
fn write_host_keeps_its_place_at_top_level() {
    assert_eq!(
        out("foreach ($i in 1..2) { $i; Write-Host \"h$i\" }"),
        "1\r\nh1\r\n2\r\nh2\r\n"
    );
    assert_eq!(
        out("if ($true) { 'a'; Write-Host 'b'; 'c' }"),
        "a\r\nb\r\nc\r\n"
    );
    assert_eq!(
        out("$x = Write-Host 'direct'; $x -eq $null"),
        "direct\r\nTrue\r\n"
    );
    assert_eq!(lines("@(Write-Host 'z').Count"), vec!["z", "0"]);
}

#[test]
fn cmd_exe() {
    let mut h = host();
    let o = run_cmd(&mut h, "hostname");
    assert_eq!((o.stdout.as_str(), o.exit_code), ("WIN-VM\r\n", 0));
    assert_eq!(
        run_cmd(&mut h, "echo hi %COMPUTERNAME%").stdout,
        "hi WIN-VM\r\n"
    );
    let o = run_cmd(&mut h, "notepad");
    assert_eq!(o.stderr, "'notepad' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n");
    assert_eq!(o.exit_code, 1);
    assert_eq!(run_cmd(&mut h, "exit /b 4").exit_code, 4);
    assert_eq!(
        run_cmd(&mut h, "notepad || echo fallback").stdout,
        "fallback\r\n"
    );
    assert_eq!(run_cmd(&mut h, "notepad && echo no").stdout, "");
    assert_eq!(run_cmd(&mut h, "echo a & echo b").stdout, "a \r\nb\r\n");
    let o = run_cmd(
        &mut h,
        "powershell -NoProfile -Command \"$x = 2 + 3; 'sum=' + $x\"",
    );
    assert_eq!(o.stdout, "sum=5\r\n");
    let script: String = "(Get-Service sshd).Status"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .map(char::from)
        .collect();
    let b64 = {
        use base64::Engine as _;
        let bytes: Vec<u8> = script.chars().map(|c| c as u8).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let o = run_cmd(
        &mut h,
        &format!("powershell.exe -NoProfile -NonInteractive -EncodedCommand {b64}"),
    );
    assert_eq!(o.stdout, "Running\r\n");
    assert_eq!(
        run_cmd(&mut h, &"x".repeat(9000)).stderr,
        "The command line is too long.\r\n"
    );
    h.add_file("C:\\t.txt", b"file body\r\n");
    assert_eq!(run_cmd(&mut h, "type C:\\t.txt").stdout, "file body\r\n");
}

#[test]
fn arithmetic_edges_do_not_panic() {
    for s in [
        "[long]::MinValue / -1",
        "-9223372036854775808 % -1",
        "9223372036854775807 + 1",
        "9223372036854775807 * 2",
        "(-9223372036854775807 - 1) / -1",
        "[datetime]'9999-12-31' ",
        "(Get-Date).AddDays(-1e300).AddDays(-1e300)",
        "New-Object DateTime 99999999999,99,99",
        "[datetime]'99999999999999-01-01'",
        "'{0:x}' -f [long]::MinValue",
        "1..9223372036854775807",
        "[int]1e300",
        "[char]99999999",
        "-(-9223372036854775808)",
        "'x'.PadLeft(99999999999)",
        "'{0,-99999999999}' -f 1",
    ] {
        let _ = run_in_small_stack(s.to_string());
    }
}

/// A tiny deterministic generator of token soup.
fn soup(seed: u64, n: usize) -> String {
    const TOKENS: &[&str] = &[
        "$x",
        "=",
        "1",
        "'a'",
        "\"b$x\"",
        "(",
        ")",
        "{",
        "}",
        "[",
        "]",
        "@(",
        "@{",
        ";",
        "\n",
        "|",
        "Where-Object",
        "ForEach-Object",
        "$_",
        "-eq",
        "-and",
        "+",
        "-",
        "*",
        "/",
        "%",
        "if",
        "else",
        "foreach",
        "in",
        "while",
        "function",
        "F",
        "param",
        "return",
        "throw",
        "try",
        "catch",
        "finally",
        ",",
        "..",
        "::",
        ".",
        "[int]",
        "[IO.File]",
        "Length",
        "-split",
        "-join",
        "-replace",
        "-f",
        "switch",
        "break",
        "continue",
        "$null",
        "$true",
        "Write-Host",
        "Select-Object",
        "-First",
        "2>$null",
        "&",
        "`",
        "#",
        "<#",
        "#>",
        "@'",
        "'@",
        "0x",
        "1kb",
        "$env:X",
        "$script:y",
        "++",
        "--",
        "!",
        "-not",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = String::new();
    for _ in 0..n {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(TOKENS[(state >> 33) as usize % TOKENS.len()]);
        out.push(' ');
    }
    out
}

#[test]
fn token_soup_never_panics() {
    let n: u64 = std::env::var("PWSH_SOUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let scripts: Vec<String> = (0..n).map(|i| soup(i, 5 + (i as usize % 40))).collect();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for s in &scripts {
                let mut h = TestHost::new();
                let limits = Limits {
                    max_steps: 5_000,
                    ..Limits::default()
                };
                let _ = Interpreter::new(&mut h)
                    .with_limits(limits)
                    .run_text(s, &[]);
                let _ = check_ps51(s);
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn host_objects_can_name_their_default_view() {
    let mut h = host();
    h.on("Get-Thing", |_, _| {
        HostResult::Output(CommandOutput::one(
            PsObject::typed("Thing")
                .with("A", 1)
                .with("B", "two")
                .with("C", 3)
                .with("D", 4)
                .with("E", 5)
                .with("__display", Value::array(vec!["B".into(), "A".into()])),
        ))
    });
    let o = run(&mut h, "Get-Thing", &[]);
    assert_eq!(o.stdout, "\r\nB   A\r\n-   -\r\ntwo 1\r\n\r\n");
    let o = run(&mut h, "Get-Thing | ConvertTo-Json -Compress", &[]);
    assert_eq!(
        o.stdout,
        "{\"A\":1,\"B\":\"two\",\"C\":3,\"D\":4,\"E\":5}\r\n"
    );
}

#[test]
fn script_files_decode_like_51() {
    assert_eq!(
        decode_script_file("'caf\u{e9}'".as_bytes()),
        "'caf\u{c3}\u{a9}'"
    );
    assert_eq!(
        decode_script_file(b"\xEF\xBB\xBF'caf\xC3\xA9'"),
        "'caf\u{e9}'"
    );
    assert_eq!(decode_script_file(b"\x80\x93"), "\u{20ac}\u{201c}");
    let mut h = host();
    run(&mut h, "Set-Content C:\\e.txt '\u{20ac}'", &[]);
    assert_eq!(h.file("C:\\e.txt").unwrap(), b"\x80\r\n");
}

#[test]
fn trap_statements() {
    let o = ps("trap { 'trapped'; continue }\nthrow 'x'\n'after'");
    assert_eq!(o.stdout, "trapped\r\nafter\r\n");
    assert_eq!(o.stderr, "");
    let o = ps("trap { 'trapped' }\nthrow 'x'\n'after'");
    assert_eq!(o.stdout, "trapped\r\nafter\r\n");
    assert!(o.stderr.starts_with("x\r\n"), "{}", o.stderr);
    let o = ps("trap { 'trapped'; break }\nthrow 'x'\n'after'");
    assert_eq!(o.stdout, "trapped\r\n");
    assert_eq!(o.exit_code, 1);
    assert_eq!(lines("function F { trap { \"t:$($_.Exception.Message)\"; continue }; throw 'in'; 'rest' }; F"), vec!["t:in", "rest"]);
}

#[test]
fn select_string_and_pipeline_paths() {
    let mut h = host();
    h.add_file(
        "C:\\cfg\\sshd_config",
        b"#Port 22\r\nPort 2222\r\nPasswordAuthentication no\r\n",
    );
    let o = run(
        &mut h,
        "Select-String -Path C:\\cfg\\sshd_config -Pattern '^Port'",
        &[],
    );
    assert_eq!(o.stdout, "C:\\cfg\\sshd_config:2:Port 2222\r\n");
    let o = run(&mut h, "(Get-Content C:\\cfg\\sshd_config | Select-String 'port').Count; 'a','b' | Select-String b; Get-Content C:\\cfg\\sshd_config | Select-String -Quiet 'nothing'", &[]);
    assert_eq!(o.stdout, "2\r\nb\r\nFalse\r\n");
    let o = run(&mut h, "(Select-String -Path C:\\cfg\\sshd_config -Pattern 'Port (\\d+)' | Select-Object -First 1).Line", &[]);
    assert_eq!(o.stdout, "#Port 22\r\n");
    let o = run(
        &mut h,
        "Get-ChildItem C:\\cfg | Remove-Item; Test-Path C:\\cfg\\sshd_config",
        &[],
    );
    assert_eq!(o.stdout, "False\r\n");
    assert_eq!(
        one("[Security.Principal.WindowsIdentity]::GetCurrent().Name"),
        "NT AUTHORITY\\SYSTEM"
    );
}

#[test]
fn add_member_and_generic_lists() {
    assert_eq!(one("$o = [pscustomobject]@{ n = 1 }; $o | Add-Member -NotePropertyName m -NotePropertyValue 2; $o.m"), "2");
    assert_eq!(one("$o = [pscustomobject]@{}; Add-Member -InputObject $o -MemberType NoteProperty -Name k -Value 'v'; $o.k"), "v");
    assert_eq!(
        one("([pscustomobject]@{} | Add-Member -NotePropertyMembers @{ a = 1 } -PassThru).a"),
        "1"
    );
    assert_eq!(
        out("$l = New-Object System.Collections.Generic.List[string]; $l.Add('x'); $l.Count"),
        "1\r\n"
    );
    assert_eq!(
        out("$l = New-Object System.Collections.ArrayList; $l.Add('x'); $l.Count"),
        "0\r\n1\r\n"
    );
}

#[test]
fn dates_and_listing() {
    assert_eq!(one("(Get-Date -Date '2024-01-01').DayOfWeek"), "Monday");
    assert_eq!(
        one("((Get-Date '2024-01-02') - (Get-Date '2024-01-01')).TotalHours"),
        "24"
    );
    assert_eq!(
        one("([datetime]'2024-02-29').AddDays(1).ToString('yyyy-MM-dd')"),
        "2024-03-01"
    );
    assert_eq!(
        one("(Get-ChildItem C:\\ -Name) -join ','"),
        "ProgramData,Users,Windows"
    );
}

#[test]
fn runcommand_parameters_through_cmd() {
    let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let (args, rest) = runcommand_params(&p(&[("a", "x^&y"), ("b", "2")]));
    assert_eq!(
        args.iter()
            .map(|(k, v)| format!("{k}={}", v.to_str()))
            .collect::<Vec<_>>(),
        vec!["a=x&y", "b=2"]
    );
    assert_eq!(rest, None);
    let (args, rest) = runcommand_params(&p(&[("a", "x&calc"), ("b", "2")]));
    assert_eq!(args.len(), 1);
    assert_eq!(args[0].1.to_str(), "x");
    assert_eq!(rest.as_deref(), Some("calc -b 2"));
    let mut h = host();
    let o = run_cmd(&mut h, rest.as_deref().unwrap());
    assert!(o
        .stderr
        .starts_with("'calc' is not recognized as an internal or external command"));
}

#[test]
fn sha256_of_a_base64_key_blob_is_the_openssh_fingerprint() {
    // `ssh-keygen -lf` of this ed25519 key prints SHA256:BwIG... (the digest of the decoded
    // blob, base64 without padding), which is how key fingerprints are computed on the guest.
    let fp = one(
        "$h = [Security.Cryptography.SHA256]::Create(); \
         $b = [Convert]::FromBase64String('AAAAC3NzaC1lZDI1NTE5AAAAIHJQnYzj9mKCCZE8M3eHtdm9nNOltS0LYhpqLqkyVKFA'); \
         'SHA256:' + [Convert]::ToBase64String($h.ComputeHash($b)).TrimEnd('=')",
    );
    assert!(fp.starts_with("SHA256:") && fp.len() == 50, "{fp}");
    assert_eq!(
        one("[Security.Cryptography.SHA256]::Create().GetType().FullName"),
        "System.Security.Cryptography.SHA256Managed"
    );
    assert_eq!(
        one("[Convert]::ToBase64String([System.Security.Cryptography.SHA256]::Create().ComputeHash([byte[]]@()))"),
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    );
    let o = ps("[Security.Cryptography.SHA256]::Create().ComputeHash($null)");
    assert!(o.stderr.contains("Value cannot be null."), "{}", o.stderr);
}
