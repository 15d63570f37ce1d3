"""The text of a second, made once a second (fingerd/each_second.py)."""

from fingerd.each_second import EachSecond, Second


def test_the_text_is_made_once_a_second_and_again_for_the_next():
    made = []

    def make(second):
        made.append(second)
        return f"t{second}"

    stamps = EachSecond(make)
    assert stamps.at(100) == Second(100, "t100")
    assert stamps.at(100) is stamps.at(100)
    assert stamps.at(101) == Second(101, "t101")
    assert made == [100, 101]
