import unittest

from slug import slugify


class SlugTest(unittest.TestCase):
    def test_words(self):
        self.assertEqual(slugify("Hello World"), "hello-world")

    def test_runs_of_spaces(self):
        self.assertEqual(slugify("Hello   World"), "hello-world")


if __name__ == "__main__":
    unittest.main()
