"""How replies become code requests, in both protocols, and the prompt."""

from agent.prompt import system_prompt
from agent.protocol import extract_blocks, request_from_tool_call


def test_fenced_block_with_a_file_name():
    [block] = extract_blocks("Here:\n```python count_lines.py\nprint(1)\n```\nDone.")
    assert (block.language, block.name, block.code) == ("python", "count_lines.py", "print(1)\n")


def test_blocks_come_out_in_order():
    text = "```bash\necho a\n```\ntext\n```python\nprint('b')\n```"
    assert [b.language for b in extract_blocks(text)] == ["bash", "python"]


def test_display_blocks_and_untagged_blocks_are_not_run():
    text = "```json\n{\"a\": 1}\n```\n```\nplain\n```\n```text\nout\n```\n```output\n1\n```"
    assert extract_blocks(text) == []


def test_a_longer_fence_can_hold_backticks():
    [block] = extract_blocks("````python\nprint('```')\n````")
    assert block.code == "print('```')\n"


def test_an_unclosed_fence_runs_to_the_end_of_the_reply():
    [block] = extract_blocks("```python\nprint(1)\nprint(2)")
    assert block.code == "print(1)\nprint(2)\n"


def test_language_tag_is_case_insensitive():
    assert extract_blocks("```Python\npass\n```")[0].language == "python"


def test_tool_call_arguments_become_a_request():
    request = request_from_tool_call("call_1", "execute", '{"language": "Python", "code": "pass", "name": "a.py"}')
    assert (request.call_id, request.language, request.code, request.name, request.error) == (
        "call_1", "python", "pass", "a.py", None)


def test_malformed_tool_calls_are_recorded_not_raised():
    assert "not valid JSON" in request_from_tool_call("c", "execute", "{oops").error
    assert "unknown tool" in request_from_tool_call("c", "shell", "{}").error
    assert "'language' and 'code'" in request_from_tool_call("c", "execute", '{"code": 1}').error
    assert "JSON object" in request_from_tool_call("c", "execute", "[1]").error


def test_system_prompt_holds_role_and_protocol_in_both_languages():
    english = system_prompt("You are careful.", protocol="tools", lang="en")
    assert english.startswith("You are careful.") and "`execute` tool" in english
    markdown = system_prompt("R", protocol="markdown", lang="en")
    assert "```python count_lines.py" in markdown
    chinese = system_prompt("R", protocol="tools", lang="zh")
    assert "工作方式" in chinese and "`execute`" in chinese
